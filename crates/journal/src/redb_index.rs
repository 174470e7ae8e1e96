//! redb's item index: which positions hold events about an item key (`crm:<id>`,
//! `remote:<id>`, `subject:<text>`). Written as a log-structured index, so that its cost per
//! event does not grow with the journal.
//!
//! # Layout
//!
//! | table               | key                    | value                                  |
//! |---------------------|------------------------|----------------------------------------|
//! | `item_tail`         | position `u64`         | the item keys of the event there       |
//! | `items.<t>.<first>` | item key `&str`        | positions (multimap, ascending): a run |
//! | `item_runs`         | first position `u64`   | (last position `u64`, tier `u8`)       |
//! | `items`             | item key `&str`        | positions: format 1 and 2 only, frozen |
//!
//! A commit appends one `item_tail` row per event that has item keys, at the end of that
//! table like the events themselves. The commit that makes the tail span the fold span
//! ([`JournalOptions::item_fold_span`](crate::JournalOptions), 4096 positions by default)
//! writes the whole tail, sorted by key, as a new run of tier 0 and empties the tail. Once
//! [`FAN_OUT`] runs of one tier follow each other at the end, they are merged, in the same
//! transaction, into one run of the next tier (a streaming merge: each run is read in key
//! order, the new run written in key order), up to [`TOP_TIER`]; runs of the top tier are
//! never merged again.
//!
//! Every run is written into an empty table in key order, so its leaves are filled one after
//! the other. Inserting the keys of an event into one large B-tree instead dirties a leaf of its
//! own per key once the tree is larger than the commit (measured: a fold of 4096 positions took
//! 150 ms in a journal of a million rows, against a few milliseconds for a run).
//!
//! # Invariants
//!
//! - The runs cover disjoint ranges of positions, and every position of a run is below every
//!   position of the runs after it in `item_runs`, and of the tail. The frozen `items` table of
//!   an older format holds only positions below all of them. So a lookup that reads `items`, the
//!   runs in order, then the tail, finds the positions of a key in ascending order.
//! - Along `item_runs`, tiers never increase (a merge takes the last runs, all of the lowest
//!   tier present, and leaves one run of the next tier in their place).
//! - A run, its `item_runs` row and the tail rows it replaces change in the commit that holds
//!   the events reaching the fold span: all of it or none of it is visible after a crash.
//!
//! Cost: each position's keys are written once per tier (three times), sequentially; a lookup
//! reads at most `(FAN_OUT - 1)` runs per tier below the top, every run of the top tier (one per
//! `FAN_OUT^TOP_TIER` fold spans: one per million positions by default) and the tail.

use redb::{
    MultimapTableDefinition, ReadTransaction, ReadableMultimapTable, ReadableTable,
    TableDefinition, TableError, WriteTransaction,
};

/// Format 1 and 2: the item index as one multimap; read, never written any more.
pub(crate) const ITEMS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("items");
/// Item keys of the events not yet in a run, by position.
pub(crate) const ITEM_TAIL: TableDefinition<u64, &[u8]> = TableDefinition::new("item_tail");
/// The runs, by first position: (last position, tier).
pub(crate) const ITEM_RUNS: TableDefinition<u64, (u64, u8)> = TableDefinition::new("item_runs");

/// Runs of one tier merged into one of the next.
pub(crate) const FAN_OUT: usize = 8;
/// The tier whose runs are never merged.
pub(crate) const TOP_TIER: u8 = 2;

/// The item keys of subjects (`ItemKey::Subject`), and the first key after them.
const SUBJECT_KEY: &str = "subject:";
const SUBJECT_KEY_END: &str = "subject;";

/// One run as `item_runs` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: u64,
    last: u64,
    tier: u8,
}

impl Run {
    fn name(&self) -> String {
        format!("items.{}.{}", self.tier, self.first)
    }
}

fn run_table(name: &str) -> MultimapTableDefinition<'_, &'static str, u64> {
    MultimapTableDefinition::new(name)
}

/// Appends the item keys of the event at `position` to the tail.
pub(crate) fn add_to_tail(
    tail: &mut redb::Table<'_, u64, &'static [u8]>,
    position: u64,
    keys: &[String],
    scratch: &mut Vec<u8>,
) -> Result<(), redb::Error> {
    encode_keys(keys, scratch);
    tail.insert(position, scratch.as_slice())?;
    Ok(())
}

/// Writes the tail as a run once it spans `span` positions up to `last`, and merges the runs
/// that then make up [`FAN_OUT`] of one tier. Called by a commit after its tail rows are in.
pub(crate) fn fold_if_due(tx: &WriteTransaction, last: u64, span: u64) -> Result<(), redb::Error> {
    let tail = tx.open_table(ITEM_TAIL)?;
    let Some(first) = tail.first()?.map(|(k, _)| k.value()) else {
        return Ok(());
    };
    if last.saturating_sub(first) + 1 < span {
        return Ok(());
    }
    let mut pairs: Vec<(String, u64)> = Vec::new();
    let mut tail_last = first;
    each_tail_row(&tail, |position, keys| {
        tail_last = position;
        pairs.extend(keys.into_iter().map(|key| (key.to_owned(), position)));
    })?;
    drop(tail);
    pairs.sort_unstable();
    let run = Run {
        first,
        last: tail_last,
        tier: 0,
    };
    {
        let name = run.name();
        let mut table = tx.open_multimap_table(run_table(&name))?;
        for (key, position) in &pairs {
            table.insert(key.as_str(), *position)?;
        }
    }
    // Deleting the tail frees its pages at once; it is recreated empty right away, so that
    // readers always find it.
    tx.delete_table(ITEM_TAIL)?;
    tx.open_table(ITEM_TAIL)?;
    tx.open_table(ITEM_RUNS)?
        .insert(run.first, (run.last, run.tier))?;
    while let Some(sources) = due_merge(tx)? {
        merge(tx, &sources)?;
    }
    Ok(())
}

/// The last [`FAN_OUT`] runs when they are all of one tier below the top.
fn due_merge(tx: &WriteTransaction) -> Result<Option<Vec<Run>>, redb::Error> {
    let runs = tx.open_table(ITEM_RUNS)?;
    let mut tail: Vec<Run> = Vec::with_capacity(FAN_OUT);
    for entry in runs.iter()?.rev() {
        let (first, value) = entry?;
        let (last, tier) = value.value();
        let run = Run {
            first: first.value(),
            last,
            tier,
        };
        if tail.first().is_some_and(|newest| newest.tier != tier) || tier >= TOP_TIER {
            break;
        }
        tail.push(run);
        if tail.len() == FAN_OUT {
            tail.reverse();
            return Ok(Some(tail));
        }
    }
    Ok(None)
}

/// Merges `sources` (consecutive runs of one tier, oldest first) into one run of the next tier.
fn merge(tx: &WriteTransaction, sources: &[Run]) -> Result<(), redb::Error> {
    let (Some(oldest), Some(newest)) = (sources.first(), sources.last()) else {
        return Ok(());
    };
    let merged = Run {
        first: oldest.first,
        last: newest.last,
        tier: oldest.tier + 1,
    };
    let names: Vec<String> = sources.iter().map(Run::name).collect();
    {
        let merged_name = merged.name();
        let mut out = tx.open_multimap_table(run_table(&merged_name))?;
        let tables = names
            .iter()
            .map(|name| tx.open_multimap_table(run_table(name)))
            .collect::<Result<Vec<_>, TableError>>()?;
        let mut cursors = Vec::with_capacity(tables.len());
        for table in &tables {
            cursors.push(table.iter()?);
        }
        // The current key of each run with its positions; a run's positions are below those of
        // the runs after it, so appending them in run order keeps them ascending.
        let mut heads: Vec<Option<(String, Vec<u64>)>> = Vec::with_capacity(cursors.len());
        for cursor in &mut cursors {
            heads.push(next_group(cursor)?);
        }
        while let Some(key) = heads
            .iter()
            .flatten()
            .map(|(key, _)| key.as_str())
            .min()
            .map(str::to_owned)
        {
            for (head, cursor) in heads.iter_mut().zip(cursors.iter_mut()) {
                if head.as_ref().is_some_and(|(k, _)| *k == key) {
                    if let Some((_, positions)) = head.take() {
                        for position in positions {
                            out.insert(key.as_str(), position)?;
                        }
                    }
                    *head = next_group(cursor)?;
                }
            }
        }
    }
    for name in &names {
        tx.delete_multimap_table(run_table(name))?;
    }
    let mut runs = tx.open_table(ITEM_RUNS)?;
    for run in sources {
        runs.remove(run.first)?;
    }
    runs.insert(merged.first, (merged.last, merged.tier))?;
    Ok(())
}

/// The next key of a run with all its positions.
fn next_group(
    cursor: &mut redb::MultimapRange<'_, &'static str, u64>,
) -> Result<Option<(String, Vec<u64>)>, redb::Error> {
    let Some(entry) = cursor.next() else {
        return Ok(None);
    };
    let (key, values) = entry?;
    let positions = values
        .map(|v| Ok(v?.value()))
        .collect::<Result<Vec<u64>, redb::StorageError>>()?;
    Ok(Some((key.value().to_owned(), positions)))
}

/// The runs in position order; none in a read-only journal of format 2, which has no
/// `item_runs` table.
fn runs(tx: &ReadTransaction) -> Result<Vec<Run>, redb::Error> {
    let table = match tx.open_table(ITEM_RUNS) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (first, value) = entry?;
        let (last, tier) = value.value();
        out.push(Run {
            first: first.value(),
            last,
            tier,
        });
    }
    Ok(out)
}

/// Every position holding an event with `key`, ascending: the frozen index, the runs, the tail.
pub(crate) fn positions(tx: &ReadTransaction, key: &str) -> Result<Vec<u64>, redb::Error> {
    let mut out = positions_in(&tx.open_multimap_table(ITEMS)?, key)?;
    for run in runs(tx)? {
        out.extend(positions_in(
            &tx.open_multimap_table(run_table(&run.name()))?,
            key,
        )?);
    }
    let tail = tx.open_table(ITEM_TAIL)?;
    each_tail_row(&tail, |position, keys| {
        if keys.contains(&key) {
            out.push(position);
        }
    })?;
    Ok(out)
}

fn positions_in(
    table: &impl ReadableMultimapTable<&'static str, u64>,
    key: &str,
) -> Result<Vec<u64>, redb::Error> {
    table
        .get(key)?
        .map(|v| Ok(v?.value()))
        .collect::<Result<Vec<u64>, redb::Error>>()
}

/// The distinct subjects containing `needle` (already lowercase), in order, at most `max`.
pub(crate) fn subjects_containing(
    tx: &ReadTransaction,
    needle: &str,
    max: usize,
) -> Result<Vec<String>, redb::Error> {
    let mut found = std::collections::BTreeSet::new();
    let mut scan = |table: redb::ReadOnlyMultimapTable<&'static str, u64>| {
        for entry in table.range(SUBJECT_KEY..SUBJECT_KEY_END)? {
            let (key, _) = entry?;
            if let Some(subject) = key.value().strip_prefix(SUBJECT_KEY)
                && subject.contains(needle)
            {
                found.insert(subject.to_owned());
            }
        }
        Ok::<(), redb::Error>(())
    };
    scan(tx.open_multimap_table(ITEMS)?)?;
    for run in runs(tx)? {
        scan(tx.open_multimap_table(run_table(&run.name()))?)?;
    }
    let tail = tx.open_table(ITEM_TAIL)?;
    each_tail_row(&tail, |_, keys| {
        for k in keys {
            if let Some(subject) = k.strip_prefix(SUBJECT_KEY)
                && subject.contains(needle)
            {
                found.insert(subject.to_owned());
            }
        }
    })?;
    Ok(found.into_iter().take(max).collect())
}

/// Writes the item keys of one event as `len : u32 LE ‖ UTF-8 bytes`, one after the other.
fn encode_keys(keys: &[String], out: &mut Vec<u8>) {
    out.clear();
    for key in keys {
        let len = u32::try_from(key.len()).expect("an item key is shorter than 4 GiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(key.as_bytes());
    }
}

/// Visits every row of the item tail in position order: its position and its keys.
fn each_tail_row(
    tail: &impl ReadableTable<u64, &'static [u8]>,
    mut visit: impl FnMut(u64, Vec<&str>),
) -> Result<(), redb::Error> {
    for entry in tail.iter()? {
        let (position, keys) = entry?;
        let position = position.value();
        let keys = decode_keys(keys.value()).map_err(|detail| {
            redb::Error::Corrupted(format!("item_tail row {position}: {detail}"))
        })?;
        visit(position, keys);
    }
    Ok(())
}

/// Reads what [`encode_keys`] wrote; an error describes the malformed part.
fn decode_keys(mut bytes: &[u8]) -> Result<Vec<&str>, String> {
    let mut keys = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes
            .split_first_chunk::<4>()
            .ok_or_else(|| format!("{} bytes left, too few for a key length", bytes.len()))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!("a key of {len} bytes, {} left", rest.len()));
        }
        let (key, rest) = rest.split_at(len);
        keys.push(std::str::from_utf8(key).map_err(|e| format!("a key is not UTF-8: {e}"))?);
        bytes = rest;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableDatabase;

    #[test]
    fn item_tail_rows_round_trip_and_damage_is_reported() {
        let keys = vec![
            "crm:1".to_owned(),
            String::new(),
            "subject:réunion".to_owned(),
        ];
        let mut row = Vec::new();
        encode_keys(&keys, &mut row);
        assert_eq!(decode_keys(&row).unwrap(), keys);
        assert!(decode_keys(&[]).unwrap().is_empty());
        // A truncated row, a length past the end, invalid UTF-8.
        assert!(decode_keys(&row[..row.len() - 1]).is_err());
        assert!(decode_keys(&row[..2]).is_err());
        assert!(decode_keys(&[1, 0, 0, 0, 0xFF]).is_err());
    }

    /// Appends events of 0 to 3 keys through many folds with a small span, in commits of
    /// varying size, and checks after each commit: the runs tile the folded positions with
    /// tiers that never increase, and every lookup and subject search equals a model.
    #[test]
    fn runs_merge_by_tiers_and_lookups_equal_a_model() {
        let tmp = tempfile::tempdir().unwrap();
        let db = redb::Database::create(tmp.path().join("index.redb")).unwrap();
        {
            let tx = db.begin_write().unwrap();
            tx.open_multimap_table(ITEMS).unwrap();
            tx.open_table(ITEM_TAIL).unwrap();
            tx.open_table(ITEM_RUNS).unwrap();
            tx.commit().unwrap();
        }
        let span = 4;
        let mut model: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        let (mut position, mut seed) = (0u64, 7u64);
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let mut top_runs = 0;
        for commit in 0..900 {
            let tx = db.begin_write().unwrap();
            {
                let mut tail = tx.open_table(ITEM_TAIL).unwrap();
                let mut scratch = Vec::new();
                for _ in 0..1 + next() % 5 {
                    position += 1;
                    let mut keys: Vec<String> = (0..next() % 4)
                        .map(|_| match next() % 3 {
                            0 => format!("crm:row-{}", next() % 50),
                            1 => format!("remote:{}", next() % 400),
                            _ => format!("subject:review {}", next() % 20),
                        })
                        .collect();
                    keys.dedup();
                    if keys.is_empty() {
                        continue;
                    }
                    for key in &keys {
                        let positions = model.entry(key.clone()).or_default();
                        if positions.last() != Some(&position) {
                            positions.push(position);
                        }
                    }
                    add_to_tail(&mut tail, position, &keys, &mut scratch).unwrap();
                }
            }
            fold_if_due(&tx, position, span).unwrap();
            tx.commit().unwrap();

            let read = db.begin_read().unwrap();
            let all = runs(&read).unwrap();
            for pair in all.windows(2) {
                assert!(pair[0].last < pair[1].first, "commit {commit}: {all:?}");
                assert!(pair[0].tier >= pair[1].tier, "commit {commit}: {all:?}");
            }
            for tier in 0..TOP_TIER {
                let n = all.iter().filter(|r| r.tier == tier).count();
                assert!(n < FAN_OUT, "commit {commit}: {n} runs of tier {tier}");
            }
            top_runs = all.iter().filter(|r| r.tier == TOP_TIER).count();
            if commit % 50 == 0 || commit == 899 {
                for (key, want) in &model {
                    assert_eq!(&positions(&read, key).unwrap(), want, "{key}");
                }
                assert!(positions(&read, "crm:nothing").unwrap().is_empty());
                let subjects: Vec<String> = model
                    .keys()
                    .filter_map(|k| k.strip_prefix(SUBJECT_KEY))
                    .filter(|s| s.contains("1"))
                    .map(str::to_owned)
                    .collect();
                assert_eq!(subjects_containing(&read, "1", 100).unwrap(), subjects);
                assert_eq!(
                    subjects_containing(&read, "1", 2).unwrap(),
                    subjects.iter().take(2).cloned().collect::<Vec<_>>()
                );
            }
        }
        // 900 commits of 1-5 events: about 2,700 positions, several runs of the top tier
        // (one per 4 × 8 × 8 = 256 positions); the merged tables are gone.
        assert!(top_runs >= 5, "{top_runs} runs of the top tier");
        let read = db.begin_read().unwrap();
        let tables = read.list_multimap_tables().unwrap().count();
        assert_eq!(tables, 1 + runs(&read).unwrap().len());
    }
}
