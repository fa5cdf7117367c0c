// The browser's half of the consistency protocol: a port of crates/editor/src/client/sync.rs
// (the ot.js / Jupiter client). The local text is the server's revision plus at most one
// change in flight and a buffer of later local edits, composed into one change when sent.
// A remote change is transformed against the in-flight change and then the buffer, with
// the server's tie-break (the lower author id's insert goes first), before it is applied.
//
// Pure: no DOM, no socket, no clock. Positions are code points; main.js converts to and
// from CodeMirror's UTF-16 offsets where the text is at hand.

import { Op, cpLen, transform, transformIndex } from "./ot.js";

/** A random 64-bit secret as a decimal string (the server derives our public id from it). */
export function randomKey() {
  const words = new Uint32Array(2);
  crypto.getRandomValues(words);
  return ((BigInt(words[0]) << 32n) | BigInt(words[1])).toString();
}

export class Sync {
  constructor(key) {
    this.key = key;
    this.you = null;
    this.epoch = null;
    this.revision = null;
    this.nextSeq = 1;
    this.inflight = null; // { seq, op }
    this.buffer = [];
    this.joined = false;
    this.len = 0; // code points in the local text
  }

  hasPending() {
    return this.inflight !== null || this.buffer.length > 0;
  }

  join(documentName, name, token) {
    this.joined = false;
    const known =
      this.revision === null ? null : { epoch: this.epoch, revision: this.revision };
    return { join: { document: documentName, name, key: this.key, known, token } };
  }

  disconnected() {
    this.joined = false;
  }

  /** A local edit (code points, on the current local text). Returns a message or null. */
  edit(op) {
    if (op.baseLen !== this.len) throw new Error(`local edit expects ${op.baseLen}, text has ${this.len}`);
    this.len = op.targetLen;
    this.buffer.push(op);
    if (this.buffer.length > 256) this.buffer = [composeAll(this.buffer)];
    return this.flush();
  }

  /**
   * Feeds one server message. Returns events for the view:
   * { reset: text, discarded } | { apply: op (local coordinates), author } | { send: msg }
   * | { acked } | { presence: participant } | { participants: [..] } | { left: id }
   * | { error: {code, reason} } | { access: {read_only, name} }
   */
  receive(msg) {
    const events = [];
    if (msg.snapshot) {
      const s = msg.snapshot;
      const discarded = this.hasPending();
      this.you = s.you;
      this.epoch = s.epoch;
      this.revision = s.revision;
      this.inflight = null;
      this.buffer = [];
      this.joined = true;
      events.push({ reset: s.text, discarded });
      this.len = cpLen(s.text);
      events.push({ participants: s.participants.map((p) => this.localParticipant(p)) });
      this.afterJoin(events);
    } else if (msg.catchup) {
      const c = msg.catchup;
      if (c.epoch !== this.epoch) throw new Error("catch-up from another incarnation of the document");
      this.you = c.you;
      for (const change of c.changes) this.remote(change, events);
      this.joined = true;
      events.push({ participants: c.participants.map((p) => this.localParticipant(p)) });
      this.afterJoin(events);
    } else if (msg.ack) {
      if (this.inflight && this.inflight.seq === msg.ack.seq) this.acked(msg.ack.revision, events);
    } else if (msg.remote) {
      this.remote(msg.remote, events);
    } else if (msg.presence) {
      if (msg.presence.id !== this.you) events.push({ presence: this.localParticipant(msg.presence) });
    } else if (msg.left) {
      events.push({ left: msg.left.id });
    } else if (msg.error) {
      events.push({ error: msg.error });
    } else if (msg.access) {
      // Before the snapshot: whether this token may edit, and the name others see.
      events.push({ access: msg.access });
    }
    return events;
  }

  /** Our selection (code points, local text) as a presence message, if it can go now. */
  presence(selection) {
    if (!this.joined || this.hasPending()) return null;
    return { presence: { base: this.revision, selection } };
  }

  afterJoin(events) {
    if (this.inflight) {
      // Not in the catch-up, so never committed: send it again on the new base.
      events.push({
        send: { change: { base: this.revision, seq: this.inflight.seq, op: this.inflight.op.toWire() } },
      });
    } else {
      const msg = this.flush();
      if (msg) events.push({ send: msg });
    }
  }

  acked(revision, events) {
    this.inflight = null;
    this.revision = revision;
    events.push({ acked: revision });
    const msg = this.flush();
    if (msg) events.push({ send: msg });
  }

  remote(change, events) {
    const expected = this.revision === null ? 0 : this.revision + 1;
    if (change.revision !== expected) {
      throw new Error(`expected revision ${expected} from the server, got ${change.revision}`);
    }
    if (change.author === this.you && this.inflight && this.inflight.seq === change.seq) {
      // Our own change, committed while we were away: it is an acknowledgement.
      this.acked(change.revision, events);
      return;
    }
    // Our change goes first at a tie when our id is lower, as on the server.
    const oursFirst = BigInt(this.you) < BigInt(change.author);
    let op = Op.fromWire(change.op);
    if (this.inflight) {
      const [mine, theirs] = transform(this.inflight.op, op, oursFirst);
      this.inflight.op = mine;
      op = theirs;
    }
    for (let i = 0; i < this.buffer.length; i++) {
      const [mine, theirs] = transform(this.buffer[i], op, oursFirst);
      this.buffer[i] = mine;
      op = theirs;
    }
    if (op.baseLen !== this.len) throw new Error("remote change does not fit the local text");
    this.len = op.targetLen;
    this.revision = change.revision;
    events.push({ apply: op, author: change.author });
  }

  flush() {
    if (!this.joined || this.inflight || this.buffer.length === 0) return null;
    const op = composeAll(this.buffer);
    this.buffer = [];
    const seq = this.nextSeq++;
    this.inflight = { seq, op };
    return { change: { base: this.revision, seq, op: op.toWire() } };
  }

  /** A participant with its selection moved from the server's revision to local text. */
  localParticipant(p) {
    let sel = p.selection;
    if (sel) {
      const through = (s, op) => ({
        anchor: transformIndex(Math.min(s.anchor, op.baseLen), op, true),
        head: transformIndex(Math.min(s.head, op.baseLen), op, true),
      });
      if (this.inflight) sel = through(sel, this.inflight.op);
      for (const b of this.buffer) sel = through(sel, b);
      sel = { anchor: Math.min(sel.anchor, this.len), head: Math.min(sel.head, this.len) };
    }
    return { id: p.id, name: p.name, selection: sel };
  }
}

function composeAll(ops) {
  let acc = ops[0];
  for (let i = 1; i < ops.length; i++) acc = acc.compose(ops[i]);
  return acc;
}
