//! CRM commands: how the decisions that target the CRM leave ledgersync, and how their results
//! come back.
//!
//! A decision that writes to the CRM — a meeting or contact tracked in a mail client (R33), a
//! task tracked there (R44, R48), an edit made on the mail server (R18), a task completed there
//! (R48), a delete made there (R36, R43, R46) — is an intent with target CRM (`create_intent`,
//! `update_intent`, `delete_intent`). No connector carries it out: it leaves as a
//! [`CrmCommand`], listed by [`commands`] from the mailbox state, with an idempotency key
//! derived from the intent's event id ([`CommandKey`]: `<mailbox>/<intent id>`), the same on
//! every retry and every listing. The CRM (or its adapter) carries the command out and answers
//! with a [`CommandResult`] naming that key; [`settle`] turns it into the intent's outcome,
//! `intent_succeeded` or `intent_failed` with their `crm` part (schema version 2), which
//! `decide` handles as it handles a connector's outcome.
//!
//! # Command lifecycle (per intent)
//!
//! | state     | entered by                                                       | left by                                                                      |
//! |-----------|------------------------------------------------------------------|------------------------------------------------------------------------------|
//! | open      | the intent decision (target CRM)                                 | a result: done → settled; failed → waiting or given up                       |
//! | waiting   | a retryable failure below `transient_retry_limit` (R12)          | its retry time: open again, with the same key                                |
//! | settled   | a done result: `intent_succeeded` (a track command links the item to the row the CRM names) | — |
//! | given up  | a failure the CRM calls not retryable, or the retryable one that reaches the limit (R12, R79) | — |
//!
//! Who causes each: `decide` makes a command open; the CRM's result moves it; the retry time
//! passes on the shell's clock. A result for a key whose command is not open or waiting (settled,
//! given up, or never decided in that mailbox) is acknowledged and recorded nowhere: [`settle`]
//! answers [`Settlement::Acknowledged`], and [`admits`] keeps the shell from recording one that
//! raced another result for the same key.
//!
//! # No echo
//!
//! A done result names the row version the CRM holds after the command; the link remembers it
//! (`Link::crm_version`). The CRM's own `record_upserted` of exactly that version is
//! ledgersync's write coming back: it is adopted as what the server item holds and decides
//! nothing on the mail side (the echo guard of R18, CRM side). A later, different version is an
//! edit like any other.

mod command;
mod result;
mod state;

pub use command::{CommandKey, CrmCommand, EmailCommand, KeyError, PendingCommand, commands};
pub use result::{
    Acknowledged, CommandResult, ResultError, ResultStatus, Settlement, admits, settle,
};
