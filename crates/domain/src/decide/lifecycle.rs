//! The mailbox lifecycle: mapping (R1), the organization marker (R2), server profiles (R4),
//! address approval (R5), Test & Enable and the initial sync (R6), alerts.

use super::*;

impl Decider<'_> {
    // ───────────── lifecycle: R1, R2, R4, R5, R6 ─────────────

    pub(super) fn mapped(&mut self, mailbox: &MailboxId, user: &UserId) {
        let s = self.state;
        let me = s.id.as_ref();
        if me == Some(mailbox) {
            match &s.owner {
                Some(prev) if prev == user => {}
                Some(prev) => {
                    self.stop_all_workloads(format!(
                        "the mailbox {} was mapped to {user}, replacing {prev}",
                        s.address
                    ));
                    self.push(
                        R1,
                        Event::MappingEnded(MappingEnded {
                            basis: basis(
                                format!(
                                    "{} is now mapped to {user}; {prev}'s mapping ends first",
                                    s.address
                                ),
                                vec![],
                            ),
                            user: prev.clone(),
                        }),
                    );
                    self.start_mapping(user);
                }
                None => self.start_mapping(user),
            }
        } else if s.owner.as_ref() == Some(user) {
            // The user moved to another mailbox: one user, one mailbox (R1).
            self.stop_all_workloads(format!("{user} was mapped to another mailbox ({mailbox})"));
            self.push(
                R1,
                Event::MappingEnded(MappingEnded {
                    basis: basis(format!("{user} is now mapped to mailbox {mailbox}"), vec![]),
                    user: user.clone(),
                }),
            );
        }
    }

    pub(super) fn start_mapping(&mut self, user: &UserId) {
        self.push(
            R1,
            Event::MappingStarted(MappingStarted {
                basis: basis(
                    format!(
                        "{} mapped to {user}; workloads start only after Test & Enable",
                        self.state.address
                    ),
                    vec![],
                ),
                user: user.clone(),
            }),
        );
    }

    /// R5: an email workload of a mailbox whose address is not approved is disabled, with an alert.
    pub(super) fn not_approved(&mut self, w: Workload) {
        let s = self.state;
        let why = format!(
            "Email cannot be {} for the mailbox {} because its email address has not been approved. \
             The mailbox has been disabled for {}. Approve the address, then run Test & Enable again.",
            if w == Workload::Incoming {
                "received"
            } else {
                "sent"
            },
            s.address,
            w
        );
        if s.workload(w).enabled
            || s.workload(w).disabled_reason != Some(DisableReason::NotApproved)
        {
            self.push(
                R5,
                Event::WorkloadDisabled(WorkloadDisabled {
                    basis: basis(
                        why.clone(),
                        vec![setting(
                            self.ctx.settings,
                            SettingKey::RequireApprovedAddress,
                        )],
                    ),
                    workload: w,
                    reason: DisableReason::NotApproved,
                }),
            );
        }
        self.alert_with(
            R5,
            AlertLevel::Error,
            why,
            vec![setting(
                self.ctx.settings,
                SettingKey::RequireApprovedAddress,
            )],
        );
    }

    /// R5: approval withdrawn while email workloads run.
    pub(super) fn approval_withdrawn(&mut self) {
        if !self.ctx.settings.require_approved_address {
            return;
        }
        for w in [Workload::Incoming, Workload::Outgoing] {
            if self.state.workload(w).enabled {
                self.not_approved(w);
            }
        }
    }

    pub(super) fn stop_all_workloads(&mut self, why: String) {
        for w in Workload::ALL {
            if self.state.workload(w).enabled {
                self.push(
                    R1,
                    Event::WorkloadDisabled(WorkloadDisabled {
                        basis: basis(
                            format!("{why}: {w} stops before the new mapping starts"),
                            vec![],
                        ),
                        workload: w,
                        reason: DisableReason::Remapped,
                    }),
                );
            }
        }
    }

    pub(super) fn alert(&mut self, rule: RuleId, level: AlertLevel, text: String) {
        self.alert_with(rule, level, text, vec![]);
    }

    /// An alert that names the settings that made it.
    pub(super) fn alert_with(
        &mut self,
        rule: RuleId,
        level: AlertLevel,
        text: String,
        used: Vec<SettingUsed>,
    ) {
        let mut notify = vec![format!("mailbox owner {}", self.owner_name())];
        if level == AlertLevel::Error {
            notify.push("server profile owner".into());
        }
        self.push(
            rule,
            Event::AlertRaised(AlertRaised {
                basis: basis(text.clone(), used),
                level,
                text,
                notify,
            }),
        );
    }

    pub(super) fn tested(&mut self, p: &MailboxTested) {
        let s = self.state;
        if s.id.as_ref() != Some(&p.mailbox) {
            return;
        }
        let email_only = matches!(
            s.server_type,
            Some(ServerType::Pop3Smtp | ServerType::ImapSmtp)
        );
        for (w, result) in [
            (Workload::Incoming, p.incoming),
            (Workload::Outgoing, p.outgoing),
            (Workload::Act, p.act),
        ] {
            if result == TestResult::NotRun {
                continue;
            }
            let was_enabled = s.workload(w).enabled;
            let disable = |d: &mut Self,
                           rule: RuleId,
                           reason: DisableReason,
                           why: String,
                           alert: Option<String>| {
                if was_enabled || s.workload(w).disabled_reason.as_ref() != Some(&reason) {
                    d.push(
                        rule,
                        Event::WorkloadDisabled(WorkloadDisabled {
                            basis: basis(why, vec![]),
                            workload: w,
                            reason,
                        }),
                    );
                }
                if let Some(text) = alert {
                    d.alert(rule, AlertLevel::Error, text);
                }
            };
            if w == Workload::Act && email_only {
                disable(
                    self,
                    R4,
                    DisableReason::Unsupported,
                    "the server profile is email-only (POP3/IMAP + SMTP): appointments, contacts and tasks are not synchronized".into(),
                    None,
                );
                continue;
            }
            if w != Workload::Act && self.ctx.settings.require_approved_address && !s.approved {
                self.not_approved(w);
                continue;
            }
            if w == Workload::Act
                && let Some(other) = p
                    .act_org_marker
                    .as_ref()
                    .filter(|o| Some(*o) != s.org.as_ref())
            {
                if !p.override_other_org {
                    let text = format!(
                        "Appointments, contacts, and tasks can't be synchronized because the email address of the mailbox {} \
                         is configured with another organization ({other}). Test & Enable with \"sync items from this \
                         organization only\" to take it over.",
                        s.address
                    );
                    disable(
                        self,
                        R2,
                        DisableReason::OtherOrganization,
                        text.clone(),
                        Some(text),
                    );
                    continue;
                }
                if let Some(org) = s.org.clone() {
                    self.push(
                        R2,
                        Event::OrganizationClaimed(OrganizationClaimed {
                            basis: basis(
                                format!("the administrator chose to take ACT sync of {} over from {other}", s.address),
                                vec![],
                            ),
                            org,
                        }),
                    );
                }
            }
            match result {
                TestResult::Success => {
                    if !was_enabled {
                        self.push(
                            R6,
                            Event::WorkloadEnabled(WorkloadEnabled {
                                basis: basis(
                                    format!("Test & Enable succeeded for {w}"),
                                    // An email workload runs only with an approved address
                                    // unless the organization does not require one (R5).
                                    if w == Workload::Act {
                                        vec![]
                                    } else {
                                        vec![setting(
                                            self.ctx.settings,
                                            SettingKey::RequireApprovedAddress,
                                        )]
                                    },
                                ),
                                workload: w,
                            }),
                        );
                        if w == Workload::Act && s.owner.is_some() {
                            self.initial_sync();
                        }
                    }
                }
                TestResult::Failure => {
                    let text = format!(
                        "Test & Enable failed for {w} on the mailbox {}; it stays disabled for {w}. Fix the cause and test again.",
                        s.address
                    );
                    disable(
                        self,
                        R6,
                        DisableReason::TestFailed,
                        text.clone(),
                        Some(text),
                    );
                }
                TestResult::NotRun => {}
            }
        }
    }

    /// On enabling ACT: every row already in the union is created (R17). Rows that left the
    /// union or were deleted while ACT was off are unlinked, never deleted: enabling a workload
    /// is not a cause to delete or cancel anything (R6).
    pub(super) fn initial_sync(&mut self) {
        let s = self.state;
        for rec in s.records.values() {
            if rec.entity() == Entity::Email {
                continue;
            }
            if s.deleted.contains(&rec.id) {
                if let Some(link) = s.active_link(&rec.id).cloned() {
                    self.unlink(
                        R6,
                        rec,
                        &link,
                        format!(
                            "\"{}\" was deleted in the CRM while appointments, contacts and tasks were disabled; \
                             enabling does not delete: the item is unlinked and left in place",
                            rec.title()
                        ),
                        vec![],
                    );
                }
                continue;
            }
            self.reconcile(rec, Cause::Enabled, &s.filters, None);
        }
    }
}
