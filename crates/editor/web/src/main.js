// The page's editor: CodeMirror 6 bound to editor-server through a WebSocket.
//
// sync.js keeps the protocol state in code points; this file converts between those and
// CodeMirror's UTF-16 offsets on the text they refer to, draws other participants' cursors
// and selections, and keeps the connection up (reconnect with backoff, resend what was not
// acknowledged, "reconnecting…" in the status bar, a leave-site prompt while edits are
// unacknowledged). The document name comes from the path (/d/NAME); the access token
// and display name from the fragment (#token=...&name=...), which browsers never send to
// servers or write to their logs.

import { Annotation, Compartment, EditorSelection, EditorState, StateEffect, StateField, Transaction } from "@codemirror/state";
import {
  Decoration,
  EditorView,
  WidgetType,
  drawSelection,
  highlightActiveLine,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { Op, cpLen, transform, transformIndex } from "./ot.js";
import { Sync, randomKey } from "./sync.js";

const SURROGATE = /[\ud800-\udfff]/;

/** The UTF-16 offset n code points after offset pos of doc. */
export function advance(doc, pos, n) {
  while (n > 0) {
    const chunk = doc.sliceString(pos, pos + n);
    if (chunk.length === 0) throw new Error("position past the end of the text");
    if (!SURROGATE.test(chunk)) {
      pos += chunk.length;
      n -= chunk.length;
      continue;
    }
    let i = 0;
    while (i < chunk.length && n > 0) {
      const c = chunk.charCodeAt(i);
      i += c >= 0xd800 && c <= 0xdbff ? 2 : 1;
      n--;
    }
    pos += i;
  }
  return pos;
}

// Half of a surrogate pair with no other half: not Unicode at all.
const LONE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Changes that replace every lone surrogate around the ranges a transaction changed (in
 * its new document) with U+FFFD, the way a UTF-8 encoder would. The server keeps Unicode
 * text and cannot take one; refusing it would close the connection, and the page would
 * reconnect and resend the same change for ever. One UTF-16 unit each way, so nothing
 * else moves.
 */
export function loneSurrogateFixes(tr) {
  const doc = tr.newDoc;
  const fixes = [];
  tr.changes.iterChangedRanges((_fromA, _toA, fromB, toB) => {
    // Two units either side: a pair split by the change is seen whole.
    const start = Math.max(fromB - 2, 0);
    const text = doc.sliceString(start, Math.min(toB + 2, doc.length));
    for (const m of text.matchAll(LONE)) {
      const at = start + m.index;
      if (at >= fromB - 1 && at <= toB && !fixes.some((f) => f.from === at)) {
        fixes.push({ from: at, to: at + 1, insert: "\ufffd" });
      }
    }
  });
  return fixes;
}

/** Code points before UTF-16 offset pos of doc. */
export function cpIndex(doc, pos) {
  return cpLen(doc.sliceString(0, pos));
}

/** A CodeMirror change set on doc (of docCp code points) as an operation in code points. */
export function changesToOp(changes, doc, docCp) {
  const op = new Op();
  let at = 0; // UTF-16 offset in doc
  let consumed = 0; // code points of doc retained or deleted so far
  changes.iterChanges((fromA, toA, _fromB, _toB, inserted) => {
    const kept = cpLen(doc.sliceString(at, fromA));
    const removed = cpLen(doc.sliceString(fromA, toA));
    op.retain(kept);
    op.insert(inserted.toString());
    op.delete(removed);
    consumed += kept + removed;
    at = toA;
  });
  op.retain(docCp - consumed);
  return op;
}

/** An operation in code points as CodeMirror change specs on doc. */
export function opToChanges(op, doc) {
  const specs = [];
  let pos = 0;
  for (const c of op.ops) {
    if (typeof c === "string") specs.push({ from: pos, insert: c });
    else if (c > 0) pos = advance(doc, pos, c);
    else {
      const end = advance(doc, pos, -c);
      specs.push({ from: pos, to: end });
      pos = end;
    }
  }
  return specs;
}

// ---- Other participants: cursors with names, selections, in their colours.

const PALETTE = ["#c026d3", "#0891b2", "#ca8a04", "#16a34a", "#2563eb", "#dc2626"];

function colourOf(id) {
  return PALETTE[Number(BigInt(id) % BigInt(PALETTE.length))];
}

class CursorWidget extends WidgetType {
  constructor(name, colour, id) {
    super();
    this.name = name;
    this.colour = colour;
    this.id = id;
  }
  eq(other) {
    return other.name === this.name && other.colour === this.colour && other.id === this.id;
  }
  toDOM() {
    const cursor = document.createElement("span");
    cursor.className = "cm-peer-cursor";
    cursor.dataset.peerName = this.name;
    cursor.dataset.peerId = this.id;
    cursor.style.borderLeftColor = this.colour;
    const label = document.createElement("span");
    label.className = "cm-peer-name";
    label.textContent = this.name;
    label.style.backgroundColor = this.colour;
    cursor.appendChild(label);
    return cursor;
  }
  ignoreEvent() {
    return true;
  }
}

const setPeers = StateEffect.define();

/** id → { name, colour, anchor, head } (UTF-16 offsets in the current text, or null). */
const peersField = StateField.define({
  create: () => new Map(),
  update(peers, tr) {
    for (const e of tr.effects) if (e.is(setPeers)) return e.value;
    if (!tr.docChanged) return peers;
    const moved = new Map();
    for (const [id, p] of peers) {
      moved.set(id, p.head === null ? p : {
        ...p,
        anchor: tr.changes.mapPos(p.anchor, 1),
        head: tr.changes.mapPos(p.head, 1),
      });
    }
    return moved;
  },
  provide: (field) =>
    EditorView.decorations.from(field, (peers) => {
      const ranges = [];
      for (const [id, p] of peers) {
        if (p.head === null) continue;
        const from = Math.min(p.anchor, p.head);
        const to = Math.max(p.anchor, p.head);
        if (from < to) {
          ranges.push(
            Decoration.mark({
              class: "cm-peer-selection",
              attributes: { style: `background-color: ${p.colour}40` },
            }).range(from, to),
          );
        }
        ranges.push(Decoration.widget({ widget: new CursorWidget(p.name, p.colour, id), side: 1 }).range(p.head));
      }
      return Decoration.set(ranges, true);
    }),
});

// ---- The page.

const remote = Annotation.define();
const editable = new Compartment();

const params = new URLSearchParams(location.hash.slice(1));
const token = params.get("token");
const documentName = decodeURIComponent(location.pathname.replace(/^\/d\//, ""));
const displayName =
  params.get("name") || localStorage.getItem("editor-name") || `browser-${Math.floor(Math.random() * 9000 + 1000)}`;
// Keep the token out of the address bar (and so out of screenshots and shared links).
// `window.`: `history` here is CodeMirror's undo history (imported above).
if (params.has("token")) window.history.replaceState(null, "", location.pathname);

const statusEl = document.getElementById("status");
const peopleEl = document.getElementById("people");
const noticeEl = document.getElementById("notice");
document.getElementById("docname").textContent = documentName;
document.title = `${documentName} · editor`;

const sync = new Sync(randomKey());
let socket = null;
let state = "connecting";
let readOnly = false;
let presenceDirty = true;
let presenceTimer = null;
let participants = new Map(); // id -> { name } (everyone else, for the status bar)

function send(msg) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(msg));
}

function updateStatus() {
  const pending = sync.hasPending() ? " · saving…" : "";
  statusEl.textContent = `${state}${pending} · r${sync.revision ?? "-"}`;
  statusEl.dataset.state = state;
  peopleEl.replaceChildren(
    ...[...participants].map(([id, p]) => {
      const el = document.createElement("span");
      el.className = "person";
      el.textContent = p.name;
      el.style.backgroundColor = colourOf(id);
      return el;
    }),
  );
}

function applyPeers(mutate) {
  const peers = new Map(view.state.field(peersField));
  mutate(peers);
  view.dispatch({ effects: setPeers.of(peers) });
}

function peerEntry(p, doc) {
  const sel = p.selection;
  return {
    name: p.name,
    colour: colourOf(p.id),
    anchor: sel ? advance(doc, 0, sel.anchor) : null,
    head: sel ? advance(doc, 0, sel.head) : null,
  };
}

function schedulePresence() {
  presenceDirty = true;
  if (presenceTimer !== null) return;
  presenceTimer = setTimeout(() => {
    presenceTimer = null;
    sendPresence();
  }, 30);
}

function sendPresence() {
  if (!presenceDirty) return;
  const doc = view.state.doc;
  const main = view.state.selection.main;
  const msg = sync.presence({ anchor: cpIndex(doc, main.anchor), head: cpIndex(doc, main.head) });
  if (msg) {
    presenceDirty = false;
    send(msg);
  }
}

function handle(msg) {
  let events;
  try {
    events = sync.receive(msg);
  } catch (e) {
    // The server broke the protocol's ordering; start over from a snapshot.
    console.error(e);
    sync.revision = null;
    socket?.close();
    return;
  }
  for (const ev of events) {
    if (ev.reset !== undefined) {
      view.dispatch({
        changes: { from: 0, to: view.state.doc.length, insert: ev.reset },
        annotations: [remote.of(true), Transaction.addToHistory.of(false)],
      });
      if (ev.discarded) notice("Edits made while offline could not be merged: the server no longer had their base.");
      // Editable from the first snapshot on, unless the server said this token only reads.
      setReadOnly(readOnly);
      if (readyAt === null) readyAt = performance.now();
    } else if (ev.apply) {
      view.dispatch({
        changes: opToChanges(ev.apply, view.state.doc),
        annotations: [remote.of(true), Transaction.addToHistory.of(false)],
      });
    } else if (ev.send) {
      send(ev.send);
    } else if (ev.participants) {
      participants = new Map(ev.participants.map((p) => [p.id, { name: p.name }]));
      const doc = view.state.doc;
      applyPeers((peers) => {
        peers.clear();
        for (const p of ev.participants) peers.set(p.id, peerEntry(p, doc));
      });
      state = "connected";
      backoff = 100;
      schedulePresence();
    } else if (ev.presence) {
      const p = ev.presence;
      participants.set(p.id, { name: p.name });
      const entry = peerEntry(p, view.state.doc);
      applyPeers((peers) => peers.set(p.id, entry));
    } else if (ev.left) {
      participants.delete(ev.left);
      applyPeers((peers) => peers.delete(ev.left));
    } else if (ev.error) {
      onServerError(ev.error);
    } else if (ev.access) {
      readOnly = ev.access.read_only;
    }
  }
  if (presenceDirty && !sync.hasPending()) sendPresence();
  updateStatus();
}

// Refusals that reconnecting cannot fix.
const FATAL = new Set([
  "BadName",
  "BadDisplayName",
  "Replaced",
  "TokenRequired",
  "BadToken",
  "TokenExpired",
  "TokenRevoked",
  "WrongDocument",
]);
let stopped = false;

function onServerError({ code, reason }) {
  if (code === "TooOld") sync.revision = null; // reload from a snapshot
  if (code === "ReadOnly") return notice("This link is read-only: edits are not accepted.");
  if (FATAL.has(code)) {
    stopped = true;
    state = "disconnected";
  }
  notice(`${code}: ${reason}`);
}

function notice(text) {
  noticeEl.textContent = text;
  noticeEl.hidden = !text;
}

function setReadOnly(on) {
  readOnly = on;
  document.body.classList.toggle("read-only", on);
  view.dispatch({
    effects: editable.reconfigure([EditorState.readOnly.of(on), EditorView.editable.of(!on)]),
  });
}

let backoff = 100;
let readyAt = null; // performance.now() when the first snapshot became editable

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws`);
  socket = ws;
  ws.onopen = () => ws.send(JSON.stringify(sync.join(documentName, displayName, token)));
  ws.onmessage = (e) => {
    if (socket !== ws) return;
    let msg;
    try {
      msg = JSON.parse(e.data);
    } catch {
      ws.close();
      return;
    }
    handle(msg);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    sync.disconnected();
    participants.clear();
    applyPeers((peers) => peers.clear());
    if (stopped) {
      updateStatus();
      return;
    }
    state = "reconnecting…";
    updateStatus();
    // Backoff 100 ms doubling to 5 s, with jitter so that many tabs do not return at once.
    const delay = backoff * (0.5 + Math.random());
    backoff = Math.min(backoff * 2, 5000);
    setTimeout(connect, delay);
  };
}

const view = new EditorView({
  parent: document.getElementById("editor"),
  state: EditorState.create({
    doc: "",
    extensions: [
      // Only "\n" breaks lines, so a "\r" stays a character of its own and offsets match
      // the server's text exactly (CRLF is two characters on both sides).
      EditorState.lineSeparator.of("\n"),
      lineNumbers(),
      highlightSpecialChars(),
      history(),
      drawSelection(),
      highlightActiveLine(),
      EditorView.lineWrapping,
      keymap.of([...defaultKeymap, ...historyKeymap, indentWithTab]),
      editable.of([EditorState.readOnly.of(true), EditorView.editable.of(false)]),
      peersField,
      // Local edits never put a lone surrogate into the text (see loneSurrogateFixes).
      EditorState.transactionFilter.of((tr) => {
        if (!tr.docChanged || tr.annotation(remote)) return tr;
        const fixes = loneSurrogateFixes(tr);
        return fixes.length === 0 ? tr : [tr, { changes: fixes, sequential: true }];
      }),
      EditorView.updateListener.of((update) => {
        let moved = update.selectionSet;
        for (const tr of update.transactions) {
          if (!tr.docChanged || tr.annotation(remote)) continue;
          const op = changesToOp(tr.changes, tr.startState.doc, sync.len);
          const msg = sync.edit(op);
          if (msg) send(msg);
          moved = true;
        }
        // Only our own edits and moves are news: a remote change moves our cursor on the
        // server as it does here, and answering every remote change with a presence
        // update from every open page would multiply the traffic by the participants.
        if (moved) schedulePresence();
        if (update.docChanged) updateStatus();
      }),
    ],
  }),
});

window.addEventListener("beforeunload", (e) => {
  if (sync.hasPending()) {
    e.preventDefault();
    e.returnValue = "";
  }
});

// Until the first snapshot the editor stays read-only (there is no text to edit yet).
state = "connecting";
updateStatus();
connect();

// For tests and the curious: the text as the editor has it, and whether edits are pending.
window.editor = {
  view,
  text: () => view.state.doc.toString(),
  pending: () => sync.hasPending(),
  revision: () => sync.revision,
  joined: () => sync.joined,
  readOnly: () => readOnly,
  status: () => state,
  readyAt: () => readyAt,
  dropConnection: () => socket?.close(),
  ot: { Op, transform, transformIndex, cpLen, advance, changesToOp, opToChanges },
  EditorSelection,
};
