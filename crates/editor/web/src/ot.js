// Operational transformation on plain text, counted in Unicode scalar values (code points),
// exactly as the server's crates/editor/src/ot.rs: same components, same normalisation
// (an insert never directly follows a delete), same transform and tie-break, so the
// browser and the server order concurrent inserts the same way.
//
// An operation is { ops, baseLen, targetLen }; a component is a positive number (retain),
// a negative number (delete) or a string (insert). On the wire a component is
// {"Retain": n}, {"Delete": n} or {"Insert": s}, as the server's serde form.

/** Code points in a JS (UTF-16) string. */
export function cpLen(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xdc00 || c > 0xdfff) n++;
    else if (i === 0 || !isHigh(s.charCodeAt(i - 1))) n++; // a lone low surrogate
  }
  return n;
}

function isHigh(c) {
  return c >= 0xd800 && c <= 0xdbff;
}

/** Splits s after n code points. */
function splitCp(s, n) {
  let i = 0;
  while (n > 0 && i < s.length) {
    i += isHigh(s.charCodeAt(i)) && i + 1 < s.length ? 2 : 1;
    n--;
  }
  return [s.slice(0, i), s.slice(i)];
}

export class Op {
  constructor() {
    this.ops = [];
    this.baseLen = 0;
    this.targetLen = 0;
  }

  retain(n) {
    if (n <= 0) return this;
    this.baseLen += n;
    this.targetLen += n;
    const last = this.ops.length - 1;
    if (last >= 0 && typeof this.ops[last] === "number" && this.ops[last] > 0) this.ops[last] += n;
    else this.ops.push(n);
    return this;
  }

  insert(s) {
    if (s === "") return this;
    this.targetLen += cpLen(s);
    const ops = this.ops;
    const last = ops.length - 1;
    if (last >= 0 && typeof ops[last] === "string") {
      ops[last] += s;
    } else if (last >= 0 && typeof ops[last] === "number" && ops[last] < 0) {
      // Insert before a delete (the normal form).
      if (last >= 1 && typeof ops[last - 1] === "string") ops[last - 1] += s;
      else {
        ops.push(ops[last]);
        ops[last] = s;
      }
    } else ops.push(s);
    return this;
  }

  delete(n) {
    if (n <= 0) return this;
    this.baseLen += n;
    const last = this.ops.length - 1;
    if (last >= 0 && typeof this.ops[last] === "number" && this.ops[last] < 0) this.ops[last] -= n;
    else this.ops.push(-n);
    return this;
  }

  isNoop() {
    return this.ops.length === 0 || (this.ops.length === 1 && this.ops[0] > 0);
  }

  toWire() {
    return this.ops.map((c) =>
      typeof c === "string" ? { Insert: c } : c > 0 ? { Retain: c } : { Delete: -c },
    );
  }

  static fromWire(list) {
    if (!Array.isArray(list)) throw new Error("operation is not a list");
    const op = new Op();
    for (const c of list) {
      if (typeof c.Insert === "string") op.insert(c.Insert);
      else if (Number.isSafeInteger(c.Retain)) op.retain(c.Retain);
      else if (Number.isSafeInteger(c.Delete)) op.delete(c.Delete);
      else throw new Error("bad component " + JSON.stringify(c));
    }
    return op;
  }

  /** this then b, as one operation. */
  compose(b) {
    const a = this;
    if (a.targetLen !== b.baseLen) throw new Error("compose: lengths do not match");
    const out = new Op();
    const A = a.ops.slice();
    const B = b.ops.slice();
    let i = 0;
    let j = 0;
    let x = A[i++];
    let y = B[j++];
    for (;;) {
      if (x === undefined && y === undefined) break;
      if (typeof x === "number" && x < 0) {
        out.delete(-x);
        x = A[i++];
        continue;
      }
      if (typeof y === "string") {
        out.insert(y);
        y = B[j++];
        continue;
      }
      if (x === undefined || y === undefined) throw new Error("compose: operation too short");
      if (typeof x === "number" && typeof y === "number" && y > 0) {
        // retain, retain
        const k = Math.min(x, y);
        out.retain(k);
        x = x > k ? x - k : A[i++];
        y = y > k ? y - k : B[j++];
      } else if (typeof x === "string" && y < 0) {
        // insert, delete
        const xl = cpLen(x);
        const k = Math.min(xl, -y);
        x = xl > k ? splitCp(x, k)[1] : A[i++];
        y = -y > k ? y + k : B[j++];
      } else if (typeof x === "string" && y > 0) {
        // insert, retain
        const xl = cpLen(x);
        const k = Math.min(xl, y);
        const [head, tail] = splitCp(x, k);
        out.insert(head);
        x = xl > k ? tail : A[i++];
        y = y > k ? y - k : B[j++];
      } else {
        // retain, delete
        const k = Math.min(x, -y);
        out.delete(k);
        x = x > k ? x - k : A[i++];
        y = -y > k ? y + k : B[j++];
      }
    }
    return out;
  }
}

/**
 * Transforms concurrent a and b (same base text): returns [a', b'] with
 * apply(a then b') == apply(b then a'). At a tie between two inserts, a's text goes first
 * when aFirst, else b's. Port of ot.rs `transform`.
 */
export function transform(a, b, aFirst) {
  if (a.baseLen !== b.baseLen) throw new Error("transform: lengths do not match");
  const a2 = new Op();
  const b2 = new Op();
  const A = a.ops;
  const B = b.ops;
  let i = 0;
  let j = 0;
  let x = A[i++];
  let y = B[j++];
  for (;;) {
    if (x === undefined && y === undefined) break;
    if (typeof x === "string" && (aFirst || typeof y !== "string")) {
      a2.insert(x);
      b2.retain(cpLen(x));
      x = A[i++];
      continue;
    }
    if (typeof y === "string") {
      a2.retain(cpLen(y));
      b2.insert(y);
      y = B[j++];
      continue;
    }
    if (x === undefined || y === undefined) throw new Error("transform: operation too short");
    const m = Math.abs(x);
    const n = Math.abs(y);
    const k = Math.min(m, n);
    if (x > 0 && y > 0) {
      a2.retain(k);
      b2.retain(k);
    } else if (x < 0 && y > 0) {
      a2.delete(k);
    } else if (x > 0 && y < 0) {
      b2.delete(k);
    } // both delete: nothing left for either
    x = m > k ? Math.sign(x) * (m - k) : A[i++];
    y = n > k ? Math.sign(y) * (n - k) : B[j++];
  }
  return [a2, b2];
}

/** Where code-point index `index` ends up after `op` (ot.rs `transform_index`). */
export function transformIndex(index, op, afterInserts) {
  let old = 0;
  let now = 0;
  for (const c of op.ops) {
    if (typeof c === "string") {
      if (index === old && !afterInserts) return now;
      now += cpLen(c);
    } else if (c > 0) {
      if (index < old + c) return now + (index - old);
      old += c;
      now += c;
    } else {
      if (index < old - c) return now;
      old -= c;
    }
  }
  return now + (index - old);
}
