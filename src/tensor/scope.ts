/**
 * Memory scopes. Every tensor is owned by the innermost open scope when it is created;
 * `tidy(fn)` disposes, when `fn` returns, every tensor created inside except those it returns
 * (found in the returned value, arrays and plain objects) or passed to `keep`. Tensors nobody
 * disposes are released by a FinalizationRegistry once garbage-collected: a backstop, not a plan.
 */

export interface Owned {
  dispose(): void;
}

const stack: Set<Owned>[] = [];

/** Called by every new tensor. */
export function track(t: Owned): void {
  stack[stack.length - 1]?.add(t);
}

/** Removes `t` from every open scope, so it outlives them (the caller now owns it). */
export function keep<T extends Owned>(t: T): T {
  for (const s of stack) s.delete(t);
  return t;
}

function collect(value: unknown, scope: Set<Owned>, out: Set<Owned>, depth: number): void {
  if (value === null || typeof value !== "object" || depth > 8) return;
  if (scope.has(value as Owned)) {
    out.add(value as Owned);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, scope, out, depth + 1);
  } else if (value instanceof Map) {
    for (const v of value.values()) collect(v, scope, out, depth + 1);
  } else if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, scope, out, depth + 1);
  }
}

/** Runs `fn`; afterwards disposes the tensors it created that it does not return. Synchronous only. */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Owned>();
  stack.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  stack.pop();
  if (result instanceof Promise) {
    for (const t of scope) t.dispose();
    throw new TypeError("tidy() takes a synchronous function: tensors of an async one cannot be tracked");
  }
  const kept = new Set<Owned>();
  collect(result, scope, kept, 0);
  for (const t of scope) if (!kept.has(t)) t.dispose();
  const parent = stack[stack.length - 1];
  if (parent) for (const t of kept) parent.add(t);
  return result;
}

/** Number of scopes open now (for diagnostics and tests). */
export function scopeDepth(): number {
  return stack.length;
}
