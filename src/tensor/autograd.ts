/** Gradient-mode scopes (torch.no_grad / torch.enable_grad). Synchronous functions only. */
import { N } from "./native.js";

function withGradMode<T>(on: boolean, fn: () => T): T {
  const prev = N.setGradEnabled(on);
  try {
    const r = fn();
    if (r instanceof Promise) throw new TypeError("grad-mode scopes take a synchronous function");
    return r;
  } finally {
    N.setGradEnabled(prev);
  }
}

/** Runs `fn` without recording autograd history. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}
/** Runs `fn` with autograd recording on (inside a noGrad scope, say). */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}
export function isGradEnabled(): boolean {
  return N.gradEnabled();
}
