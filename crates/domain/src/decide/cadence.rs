//! The cadence of each workload's cycles (R7, R8, R9).

use super::*;

impl Decider<'_> {
    // ───────────── cadence: R7, R8, R9 ─────────────

    /// When the workload's next cycle runs, counted from the end of the cycle that just
    /// finished: incoming 5 minutes, 2 after a busy cycle, growing by a step per quiet cycle up
    /// to 12 (R7); outgoing every 5 minutes (R8); ACT 5 minutes after a cycle with changes,
    /// growing per quiet cycle up to 12, or 15 when incoming email is enabled too (R9).
    pub(super) fn schedule_after_cycle(&mut self, w: Workload, items: u32) {
        let s = self.state;
        let cfg = &self.ctx.settings.schedule;
        let quiet = if items == 0 {
            s.workload(w).quiet_cycles + 1
        } else {
            0
        };
        let stretched = |base: Duration, max: Duration| {
            Duration(
                (base.0 + cfg.quiet_step.0 * quiet as i64)
                    .min(max.0)
                    .max(base.0.min(max.0)),
            )
        };
        let (interval, why, keys): (Duration, String, &[SettingKey]) = match w {
            Workload::Incoming if items >= cfg.busy_items => (
                cfg.incoming_min,
                format!("busy cycle ({items} items): incoming email is checked again soon"),
                &[
                    SettingKey::ScheduleIncomingMinSeconds,
                    SettingKey::ScheduleBusyItems,
                ],
            ),
            Workload::Incoming if items > 0 => (
                cfg.incoming,
                format!("{items} item(s) this cycle: the ordinary incoming cadence"),
                &[SettingKey::ScheduleIncomingSeconds],
            ),
            Workload::Incoming => (
                stretched(cfg.incoming, cfg.incoming_max),
                format!(
                    "{quiet} quiet cycle(s) in a row: incoming email waits longer, up to the maximum"
                ),
                &[
                    SettingKey::ScheduleIncomingSeconds,
                    SettingKey::ScheduleQuietStepSeconds,
                    SettingKey::ScheduleIncomingMaxSeconds,
                ],
            ),
            Workload::Outgoing => (
                cfg.outgoing,
                "Pending Send is scanned at a fixed interval".to_string(),
                &[SettingKey::ScheduleOutgoingSeconds],
            ),
            Workload::Act => {
                let max = if s.workload(Workload::Incoming).enabled {
                    cfg.act_max_with_incoming
                } else {
                    cfg.act_max
                };
                let key = if s.workload(Workload::Incoming).enabled {
                    SettingKey::ScheduleActMaxWithIncomingSeconds
                } else {
                    SettingKey::ScheduleActMaxSeconds
                };
                if items > 0 {
                    (
                        cfg.act_min,
                        format!("{items} change(s) this cycle: the shortest ACT cadence"),
                        &[SettingKey::ScheduleActMinSeconds],
                    )
                } else {
                    (
                        stretched(cfg.act_min, max),
                        format!(
                            "{quiet} quiet cycle(s) in a row: ACT waits longer, up to the maximum"
                        ),
                        if key == SettingKey::ScheduleActMaxSeconds {
                            &[
                                SettingKey::ScheduleActMinSeconds,
                                SettingKey::ScheduleQuietStepSeconds,
                                SettingKey::ScheduleActMaxSeconds,
                            ]
                        } else {
                            &[
                                SettingKey::ScheduleActMinSeconds,
                                SettingKey::ScheduleQuietStepSeconds,
                                SettingKey::ScheduleActMaxWithIncomingSeconds,
                            ]
                        },
                    )
                }
            }
        };
        let at = self.ctx.now + interval;
        let used = keys
            .iter()
            .map(|k| setting(self.ctx.settings, *k))
            .collect();
        self.push(
            cadence_rule(w),
            Event::CycleScheduled(CycleScheduled {
                basis: basis(
                    format!("{why}: next {w} cycle in {} s, at {at}", interval.0 / 1000),
                    used,
                ),
                workload: w,
                at,
            }),
        );
    }
}
