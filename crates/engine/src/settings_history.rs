//! The settings each recorded observation was decided under.
//!
//! A mailbox decides with the settings it finds when the observation's turn comes, and records
//! their version ([`SettingsVersion`]: the id of the `setting_changed` that last changed them,
//! or the nil id for the defaults) as the last id of the observation's causation
//! (`MailboxCore::prepare`). A setting change can commit between the moment a mailbox reads
//! the settings and the moment its append commits, and a journal whose positions are not in
//! commit order can even place it after; so `replay`, `what-if` and `explain` never infer the
//! settings from positions: they look the version up here.
//!
//! Journals written before versions were recorded have observations whose last cause names no
//! settings version; those are decided with the settings in force at their position, as before.

use crate::error::EngineError;
use crate::log::{PAGE, Stored};
use ledgersync_domain::{Event, EventId, OrgSettings, SettingsVersion};
use ledgersync_journal::Journal;
use std::collections::HashMap;

/// Every settings version of a journal's organization streams.
#[derive(Clone, Debug)]
pub struct SettingsHistory {
    versions: HashMap<SettingsVersion, OrgSettings>,
}

impl Default for SettingsHistory {
    fn default() -> Self {
        Self {
            versions: HashMap::from([(SettingsVersion::DEFAULTS, OrgSettings::default())]),
        }
    }
}

impl SettingsHistory {
    /// Reads the `setting_changed` events of every organization stream of `journal` (other
    /// payloads are not decoded) and folds each stream's settings.
    pub fn load(journal: &dyn Journal) -> Result<Self, EngineError> {
        let mut history = Self::default();
        let setting_changed = Event::SettingChanged(ledgersync_domain::event::SettingChanged {
            key: String::new(),
            value: String::new(),
        })
        .event_type();
        for (stream, _) in journal.streams()? {
            if stream.as_mailbox().is_some() {
                continue;
            }
            let mut settings = OrgSettings::default();
            let mut from = 1;
            loop {
                let page = journal.read_stream(&stream, from, PAGE)?;
                if page.is_empty() {
                    break;
                }
                for envelope in page {
                    from = envelope.seq + 1;
                    if envelope.event_type != setting_changed {
                        continue;
                    }
                    let stored = Stored::decode(envelope)?;
                    if let Event::SettingChanged(p) = &stored.event {
                        // Values were validated before they were recorded; as in
                        // `OrgState::apply`, a bad one changes nothing but the version.
                        let _ = settings.set_recorded(&p.key, &p.value);
                        settings.version = SettingsVersion(stored.envelope.event_id);
                        history.versions.insert(settings.version, settings.clone());
                    }
                }
            }
        }
        Ok(history)
    }

    /// The settings of the observation whose causation is `causation`, when its last cause
    /// names a settings version; `None` for an observation recorded without one.
    pub fn of(&self, causation: &[EventId]) -> Option<&OrgSettings> {
        causation
            .last()
            .and_then(|id| self.versions.get(&SettingsVersion(*id)))
    }

    /// The settings of `causation`, or `at_position` for an observation without a version.
    pub fn or_position<'a>(
        &'a self,
        causation: &[EventId],
        at_position: &'a OrgSettings,
    ) -> &'a OrgSettings {
        self.of(causation).unwrap_or(at_position)
    }
}
