//! The editor protocol as JSON, for browsers: the same messages as [`crate::protocol`],
//! one per WebSocket text frame, converted both ways here.
//!
//! Differences from the binary encoding, all because of JavaScript: ids, keys and epochs
//! are 64-bit and travel as decimal strings (a JS number holds 53 bits); an operation is
//! the list of components as serde writes them (`{"Retain":3}`, `{"Insert":"é"}`,
//! `{"Delete":1}`), counted in Unicode scalar values like everywhere else on the server.
//! The browser converts to and from its UTF-16 offsets, where it has the text at hand.
//! Sequence numbers and revisions stay numbers (they count edits, far below 2^53).

use serde::{Deserialize, Serialize};

use crate::ot::TextOperation;
use crate::presence::{Participant, Selection};
use crate::protocol::{ClientMsg, ErrorCode, Known, RemoteChange, ServerMsg};

/// A 64-bit value as a decimal string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id(pub u64);

impl Serialize for Id {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse()
            .map(Id)
            .map_err(|_| serde::de::Error::custom("expected a 64-bit unsigned integer as a string"))
    }
}

/// What a browser sends.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WebClientMsg {
    Join {
        document: String,
        name: String,
        key: Id,
        known: Option<WebKnown>,
        /// An access token, from the page's URL fragment (never from the query string).
        #[serde(default)]
        token: Option<String>,
    },
    Change {
        base: u64,
        seq: u64,
        op: TextOperation,
    },
    Presence {
        base: u64,
        selection: Option<Selection>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WebKnown {
    pub epoch: Id,
    pub revision: u64,
}

impl WebClientMsg {
    /// The binary protocol's message.
    pub fn into_client_msg(self) -> ClientMsg {
        match self {
            WebClientMsg::Join {
                document,
                name,
                key,
                known,
                token,
            } => ClientMsg::Join {
                document,
                name,
                key: key.0,
                known_revision: known.map(|k| Known {
                    epoch: k.epoch.0,
                    revision: k.revision,
                }),
                token,
            },
            WebClientMsg::Change { base, seq, op } => ClientMsg::Change {
                base_revision: base,
                seq,
                op,
            },
            WebClientMsg::Presence { base, selection } => ClientMsg::Presence {
                base_revision: base,
                selection,
            },
        }
    }
}

/// What the server sends a browser.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebServerMsg<'a> {
    Snapshot {
        you: Id,
        epoch: Id,
        revision: u64,
        text: &'a str,
        participants: Vec<WebParticipant<'a>>,
    },
    Catchup {
        you: Id,
        epoch: Id,
        changes: Vec<WebChange<'a>>,
        participants: Vec<WebParticipant<'a>>,
    },
    Ack {
        revision: u64,
        seq: u64,
    },
    Remote(WebChange<'a>),
    Presence(WebParticipant<'a>),
    Left {
        id: Id,
    },
    Error {
        code: ErrorCode,
        reason: &'a str,
    },
    /// Whether the token only allows reading (the page makes the editor read-only), and
    /// the display name the others see.
    Access {
        read_only: bool,
        name: &'a str,
    },
}

#[derive(Debug, Serialize)]
pub struct WebParticipant<'a> {
    pub id: Id,
    pub name: &'a str,
    pub selection: Option<Selection>,
}

#[derive(Debug, Serialize)]
pub struct WebChange<'a> {
    pub revision: u64,
    pub author: Id,
    pub seq: u64,
    pub op: &'a TextOperation,
}

fn participant(p: &Participant) -> WebParticipant<'_> {
    WebParticipant {
        id: Id(p.id),
        name: &p.name,
        selection: p.selection,
    }
}

fn change(c: &RemoteChange) -> WebChange<'_> {
    WebChange {
        revision: c.revision,
        author: Id(c.author),
        seq: c.seq,
        op: &c.op,
    }
}

/// The JSON text of `msg` for a browser.
pub fn encode(msg: &ServerMsg) -> String {
    let web = match msg {
        ServerMsg::Snapshot {
            you,
            epoch,
            revision,
            text,
            participants,
        } => WebServerMsg::Snapshot {
            you: Id(*you),
            epoch: Id(*epoch),
            revision: *revision,
            text,
            participants: participants.iter().map(participant).collect(),
        },
        ServerMsg::Catchup {
            you,
            epoch,
            changes,
            participants,
        } => WebServerMsg::Catchup {
            you: Id(*you),
            epoch: Id(*epoch),
            changes: changes.iter().map(change).collect(),
            participants: participants.iter().map(participant).collect(),
        },
        ServerMsg::Ack { revision, seq } => WebServerMsg::Ack {
            revision: *revision,
            seq: *seq,
        },
        ServerMsg::Remote(c) => WebServerMsg::Remote(change(c)),
        ServerMsg::Presence(p) => WebServerMsg::Presence(participant(p)),
        ServerMsg::Left { id } => WebServerMsg::Left { id: Id(*id) },
        ServerMsg::Error { code, reason } => WebServerMsg::Error {
            code: *code,
            reason,
        },
        ServerMsg::Access { read_only, name } => WebServerMsg::Access {
            read_only: *read_only,
            name,
        },
    };
    // Serialising these types cannot fail: every map key is a string.
    serde_json::to_string(&web).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"code":"Unavailable","reason":"cannot encode: {e}"}}}}"#)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_with_big_ids_and_a_change_decode() {
        let join: WebClientMsg = serde_json::from_str(
            r#"{"join":{"document":"notes","name":"ann","key":"18446744073709551615","known":{"epoch":"9007199254740993","revision":4},"token":"t"}}"#,
        )
        .unwrap();
        let msg = join.into_client_msg();
        assert_eq!(
            msg,
            ClientMsg::Join {
                document: "notes".into(),
                name: "ann".into(),
                key: u64::MAX,
                known_revision: Some(Known {
                    epoch: 9_007_199_254_740_993,
                    revision: 4
                }),
                token: Some("t".into()),
            }
        );
        let change: WebClientMsg = serde_json::from_str(
            r#"{"change":{"base":4,"seq":1,"op":[{"Retain":2},{"Insert":"😀"},{"Delete":1}]}}"#,
        )
        .unwrap();
        let expected = TextOperation::splice(3, 2, 1, "😀").unwrap();
        assert_eq!(
            change.into_client_msg(),
            ClientMsg::Change {
                base_revision: 4,
                seq: 1,
                op: expected
            }
        );
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        for bad in [
            r#"{"join":{"document":"a","name":"b","key":12,"known":null}}"#,
            r#"{"join":{"document":"a","name":"b","key":"-1","known":null}}"#,
            r#"{"change":{"base":0,"seq":1,"op":[{"Retain":-1}]}}"#,
            r#"{"change":{"base":0,"seq":1,"op":[{"Move":1}]}}"#,
            r#"{"change":{"base":0,"seq":1,"op":[{"Retain":1}],"x":1}}"#,
            r#"{"nope":{}}"#,
            "[]",
        ] {
            assert!(serde_json::from_str::<WebClientMsg>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_messages_carry_ids_as_strings() {
        let msg = ServerMsg::Left { id: u64::MAX };
        assert_eq!(encode(&msg), r#"{"left":{"id":"18446744073709551615"}}"#);
        let ack = ServerMsg::Ack {
            revision: 3,
            seq: 2,
        };
        assert_eq!(encode(&ack), r#"{"ack":{"revision":3,"seq":2}}"#);
        let access = ServerMsg::Access {
            read_only: true,
            name: "viewer".into(),
        };
        assert_eq!(
            encode(&access),
            r#"{"access":{"read_only":true,"name":"viewer"}}"#
        );
    }
}
