// Streaming weight upload: bytes go from the byte source to their GPU buffers in bounded pieces, through a small
// ring of mapped staging buffers (MAP_WRITE | COPY_SRC) and copyBufferToBuffer, so no tensor is ever whole in JS
// memory. A 27B lm_head at 6 bits is ~1 GB; read whole and copied into a mappedAtCreation buffer it needed that
// much JS memory plus the mapping's shadow copy at once. queue.writeBuffer would bound memory as well, but it copies
// every call into the implementation's own staging memory first: one more copy of every weight byte than writing
// straight into a mapped staging buffer, which costs several times more for large uploads.
//
// Memory in flight, at most: two pieces on the JS side (the one being staged and the next one being read, see
// streamPieces) plus the ring's staging buffers, each pieceBytes: 4 × 16 MiB = 64 MiB by default.
import type { GpuContext } from './context.ts';

const MiB = 2 ** 20;

/** Knobs for tests and measurements; the defaults are what the loader uses. */
export const uploadOptions = {
  /** Bytes asked of the byte source per piece (one row at least), and the size of each staging buffer. */
  pieceBytes: 16 * MiB,
  /** Staging buffers: while the GPU copies out of one, the next pieces are written into another. */
  ringSize: 2,
};

const ceil4 = (n: number): number => Math.ceil(n / 4) * 4;

/**
 * Staging memory for uploads into storage buffers. Writes fill the current staging buffer back to back (small
 * tensors share one); a full buffer is unmapped, its copies are encoded and submitted in one command buffer, and
 * it is mapped again (mapAsync resolves once the GPU has copied out of it) while the next one fills. One writer at
 * a time: each write must be awaited before the next.
 */
export interface StagingRing {
  /**
   * Copies `bytes` (a multiple of 4 long) into staging memory, and records their copy to `dst` at `dstOffset` (a
   * multiple of 4). Resolves once `bytes` may be dropped; the copy reaches the GPU at the next submit or when its
   * staging buffer fills.
   */
  write(dst: GPUBuffer, dstOffset: number, bytes: Uint8Array): Promise<void>;
  /** Submits every copy recorded so far; commands submitted later see the bytes. */
  submit(): void;
  /** Forgets recorded, unsubmitted copies into these buffers (an upload that failed destroys them). */
  cancel(dsts: readonly GPUBuffer[]): void;
  /** Destroys the staging buffers; copies not yet submitted are dropped. */
  destroy(): void;
}

interface Copy { src: number; dst: GPUBuffer; dstOffset: number; size: number }

interface Slot {
  buffer: GPUBuffer;
  /** The mapped range while the slot is being filled; null while it is unmapped (its copies in flight). */
  view: Uint8Array | null;
  /** The mapAsync that makes it writable again, after its copies ran. */
  mapping: Promise<void> | null;
  used: number;
  copies: Copy[];
}

export function createStagingRing(ctx: GpuContext, slotBytes = uploadOptions.pieceBytes, slots = uploadOptions.ringSize): StagingRing {
  const { device } = ctx;
  const size = Math.max(16, ceil4(Math.min(slotBytes, ctx.limits.maxBufferSize)));
  const ring: (Slot | undefined)[] = new Array(Math.max(1, slots)).fill(undefined);
  let current = 0;
  let busy = false;
  let destroyed = false;

  /** The current slot, mapped: created mapped on first use, else waiting for its mapAsync. */
  async function open(): Promise<Slot & { view: Uint8Array }> {
    let slot = ring[current];
    if (!slot) {
      // An allocation that fails is otherwise silent (an invalid buffer, every copy from it dropped): ask.
      device.pushErrorScope('out-of-memory');
      const buffer = device.createBuffer({
        label: `weight-staging-${current}`, size, usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC, mappedAtCreation: true,
      });
      const view = new Uint8Array(buffer.getMappedRange());
      const oom = await device.popErrorScope();
      if (oom) {
        buffer.destroy();
        throw new Error(`weight upload: no GPU memory for a ${size}-byte staging buffer (${oom.message})`);
      }
      slot = ring[current] = { buffer, view, mapping: null, used: 0, copies: [] };
    }
    if (!slot.view) {
      try {
        await slot.mapping;
      } catch (e) {
        throw new Error(`weight upload: mapping staging buffer ${slot.buffer.label} for writing failed (${(e as Error)?.message ?? e}); ` +
          'the GPU device may have been lost', { cause: e });
      }
      if (destroyed) throw new Error('weight upload: the staging ring was destroyed');
      slot.view = new Uint8Array(slot.buffer.getMappedRange());
    }
    return slot as Slot & { view: Uint8Array };
  }

  /** Submits the current slot's copies, starts mapping it again, and moves on to the next slot. */
  function seal(): void {
    const slot = ring[current];
    if (!slot || slot.copies.length === 0) return;
    slot.buffer.unmap();
    slot.view = null;
    const enc = device.createCommandEncoder({ label: 'weight upload' });
    for (const c of slot.copies) enc.copyBufferToBuffer(slot.buffer, c.src, c.dst, c.dstOffset, c.size);
    device.queue.submit([enc.finish()]);
    slot.copies = [];
    slot.used = 0;
    slot.mapping = slot.buffer.mapAsync(GPUMapMode.WRITE);
    // Awaited in open() when the slot comes round again; a mapping nobody waits for (the last ones, aborted by
    // destroy) must not surface as an unhandled rejection.
    slot.mapping.catch(() => undefined);
    current = (current + 1) % ring.length;
  }

  return {
    async write(dst, dstOffset, bytes) {
      if (destroyed) throw new Error('weight upload: the staging ring was destroyed');
      if (dstOffset % 4 !== 0 || bytes.byteLength % 4 !== 0) {
        throw new Error(`weight upload: copies need 4-byte offsets and sizes, got ${bytes.byteLength} bytes at ${dstOffset} of ${dst.label}`);
      }
      if (dstOffset + bytes.byteLength > dst.size) {
        throw new Error(`weight upload: ${bytes.byteLength} bytes at ${dstOffset} overrun ${dst.label} (${dst.size} bytes)`);
      }
      if (busy) throw new Error('weight upload: concurrent writes to one staging ring');
      busy = true;
      try {
        let done = 0;
        while (done < bytes.byteLength) {
          const slot = await open();
          const n = Math.min(bytes.byteLength - done, size - slot.used);
          slot.view.set(bytes.subarray(done, done + n), slot.used);
          const last = slot.copies.at(-1);
          // Pieces of one destination written back to back become one copy.
          if (last && last.dst === dst && last.dstOffset + last.size === dstOffset + done && last.src + last.size === slot.used) last.size += n;
          else slot.copies.push({ src: slot.used, dst, dstOffset: dstOffset + done, size: n });
          slot.used += n;
          done += n;
          if (slot.used === size) seal();
        }
      } finally {
        busy = false;
      }
    },
    submit: seal,
    cancel(dsts) {
      const drop = new Set(dsts);
      for (const slot of ring) if (slot) slot.copies = slot.copies.filter((c) => !drop.has(c.dst));
    },
    destroy() {
      destroyed = true;
      for (const slot of ring) slot?.buffer.destroy();
    },
  };
}

/**
 * Appends bytes to one storage buffer from its start, in order and in pieces of any length: whole 4-byte words go
 * to the ring, the 0-3 bytes left over wait for the next piece (fused linears put members back to back at any byte
 * offset, scales rows can be 2 or 6 bytes), and end() zero-pads the last word.
 */
export interface BufferWriter {
  append(bytes: Uint8Array): Promise<void>;
  end(): Promise<void>;
}

export function bufferWriter(ring: StagingRing, dst: GPUBuffer): BufferWriter {
  let flushed = 0; // bytes handed to the ring, a multiple of 4
  const carry = new Uint8Array(4);
  let carried = 0;
  return {
    async append(bytes) {
      let i = 0;
      if (carried > 0) {
        i = Math.min(4 - carried, bytes.byteLength);
        carry.set(bytes.subarray(0, i), carried);
        carried += i;
        if (carried < 4) return;
        await ring.write(dst, flushed, carry);
        flushed += 4;
        carried = 0;
      }
      const whole = (bytes.byteLength - i) & ~3;
      if (whole > 0) {
        await ring.write(dst, flushed, bytes.subarray(i, i + whole));
        flushed += whole;
      }
      carry.set(bytes.subarray(i + whole));
      carried = bytes.byteLength - i - whole;
    },
    async end() {
      if (carried === 0) return;
      carry.fill(0, carried);
      await ring.write(dst, flushed, carry);
      flushed += 4;
      carried = 0;
    },
  };
}

/**
 * Runs read(k) one piece ahead of land(k): the source reads piece k + 1 while piece k is staged and the GPU copies
 * earlier ones, and at most two pieces are held at once. Stops at the first failure.
 */
export async function streamPieces<T>(count: number, read: (k: number) => Promise<T>, land: (piece: T, k: number) => Promise<void>): Promise<void> {
  const ahead = (k: number): Promise<T> | undefined => {
    if (k >= count) return undefined;
    const p = read(k);
    // A read that fails while the piece before it is landing is awaited only afterwards (or never, if landing fails
    // too): mark it handled now so Node does not call it an unhandled rejection; awaiting it still throws.
    p.catch(() => undefined);
    return p;
  };
  let next = ahead(0);
  for (let k = 0; k < count; k++) {
    const piece = await next!;
    next = ahead(k + 1);
    await land(piece, k);
  }
}
