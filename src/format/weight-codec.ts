// Quantize / dequantize a weight in any format of the table (weight-format.ts) on the CPU: the reference the GPU
// kernels are compared against, and the writer of the tiny checkpoints. One case per format.

import { decodeFloats, encodeFloats, type FloatDType } from './dtype.ts';
import { dequantizeFp8, dequantizeMx, quantizeFp8, quantizeMx } from './fp-quant.ts';
import { dequantizeAffine, quantizeAffine } from './quant.ts';
import { isQuant, type FloatStorage, type LinearFormat } from './weight-format.ts';

/** The stored tensors of a weight, as raw little-endian bytes (what the safetensors file and the GPU hold). */
export interface StoredWeight { weight: Uint8Array; scales?: Uint8Array; biases?: Uint8Array }

const floatDType = (d: FloatStorage): FloatDType => d.toUpperCase() as FloatDType;
const bytesOf = (a: Uint32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const wordsOf = (b: Uint8Array): Uint32Array => {
  const copy = b.byteOffset % 4 === 0 ? b : b.slice();
  return new Uint32Array(copy.buffer, copy.byteOffset, copy.byteLength >> 2);
};

function scaleFloat(f: LinearFormat): FloatStorage {
  if (!isQuant(f) || (f.scaleDtype !== 'bf16' && f.scaleDtype !== 'f16' && f.scaleDtype !== 'f32')) {
    throw new Error(`${f.kind}: float scales expected, found ${isQuant(f) ? f.scaleDtype : 'none'}`);
  }
  return f.scaleDtype;
}

/** A row-major f32 [rows, cols] matrix stored in format f. */
export function quantizeWeight(w: Float32Array, rows: number, cols: number, f: LinearFormat): StoredWeight {
  switch (f.kind) {
    case 'float': return { weight: encodeFloats(w, floatDType(f.dtype)) };
    case 'affine': {
      const q = quantizeAffine(w, rows, cols, f.bits, f.groupSize, scaleFloat(f));
      return { weight: bytesOf(q.weight), scales: q.scales, biases: q.biases };
    }
    case 'mxfp4': case 'nvfp4': case 'mxfp8': {
      const q = quantizeMx(w, rows, cols, f.kind);
      return { weight: bytesOf(q.weight), scales: q.scales };
    }
    case 'fp8': {
      const q = quantizeFp8(w, rows, cols, f.groupSize, floatDType(scaleFloat(f)));
      return { weight: q.weight, scales: q.scales };
    }
  }
}

/** The f32 [rows, cols] matrix a stored weight decodes to (what the kernels compute with). */
export function dequantizeWeight(f: LinearFormat, rows: number, cols: number, d: StoredWeight): Float32Array {
  const need = (t: Uint8Array | undefined, what: string): Uint8Array => {
    if (!t) throw new Error(`${f.kind} weight [${rows}, ${cols}]: missing ${what}`);
    return t;
  };
  switch (f.kind) {
    case 'float': return decodeFloats(d.weight, floatDType(f.dtype));
    case 'affine':
      return dequantizeAffine(wordsOf(d.weight), need(d.scales, 'scales'), need(d.biases, 'biases'), rows, cols, f.bits, f.groupSize, scaleFloat(f));
    case 'mxfp4': case 'nvfp4': case 'mxfp8':
      return dequantizeMx(wordsOf(d.weight), need(d.scales, 'scales'), rows, cols, f.kind);
    case 'fp8':
      return dequantizeFp8(d.weight, need(d.scales, 'scales'), rows, cols, f.groupSize, floatDType(scaleFloat(f)));
  }
}
