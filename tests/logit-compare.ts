// Shared logit comparison for the end-to-end tests: max |Δ| and argmax agreement where the oracle's margin is clear.
export interface LogitDiff { maxAbs: number; argmaxMismatch: boolean; margin: number }

export function compareLogits(got: ArrayLike<number>, want: ArrayLike<number>): LogitDiff {
  if (got.length !== want.length) throw new Error(`logit length ${got.length} != ${want.length}`);
  let maxAbs = 0;
  let gi = 0;
  let wi = 0;
  for (let i = 0; i < want.length; i++) {
    if (!Number.isFinite(got[i])) return { maxAbs: Infinity, argmaxMismatch: true, margin: 0 };
    maxAbs = Math.max(maxAbs, Math.abs(got[i] - want[i]));
    if (got[i] > got[gi]) gi = i;
    if (want[i] > want[wi]) wi = i;
  }
  let second = -Infinity;
  for (let i = 0; i < want.length; i++) if (i !== wi && want[i] > second) second = want[i];
  const margin = want[wi] - second;
  return { maxAbs, argmaxMismatch: gi !== wi, margin };
}
