//! A node's durable purge state: an append-only journal in its state dir, written and
//! `fdatasync`'d once per applied batch, before the batch is acknowledged.
//!
//! The journal replaced a redb database, whose commit (copy-on-write B-tree pages, two
//! tables, then `fsync`) cost about 240 µs of CPU a batch on this project's machine against
//! 50–90 µs for an append here (`docs/benchmarks.md`, "An append-only journal instead of
//! redb"); every node pays it for every purge.
//!
//! ## On-disk format, version 1 (`freshness.journal`)
//!
//! ```text
//! header   b"FRESCOPJ", u32 LE version
//! entry    u32 LE payload length (0: the journal ends here), [u8; 8] blake3 of the payload, payload
//! payload  b'S' (snapshot): u64 applied, u64 floor, u64 compacted_below, rules
//!          b'B' (batch):    u64 applied, rules
//! rules    u32 count, then each: u8 kind code, u64 hard, u64 soft, u32 key length, key
//! ```
//!
//! All integers are little-endian. The first entry is a snapshot; batches follow, each raising
//! rules (a rule only ever grows, so replaying is taking the maximum) and moving `applied` on.
//! Past the last entry the file holds zeros written ahead of time, so that an append changes
//! no file metadata and `fdatasync` flushes the appended bytes alone. An entry cut short, or
//! whose digest does not match, ends the journal: it was being written when the node stopped,
//! so its batch was never acknowledged, and the node fetches it again from the log.
//!
//! Compaction, a reset and a journal grown past [`RuleJournal::needs_rewrite`] rewrite the
//! whole state as one snapshot into a new file, which replaces the old one by a rename.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::rules::{Rule, RuleKind};

const MAGIC: &[u8; 8] = b"FRESCOPJ";
const VERSION: u32 = 1;
const HEADER_LEN: u64 = 12;
const ENTRY_HEAD_LEN: usize = 12;
const SNAPSHOT: u8 = b'S';
const BATCH: u8 = b'B';
/// Zeros written ahead of the end at a time.
const PREALLOCATE: u64 = 1 << 20;
/// Batches appended past the snapshot before the journal is rewritten, at the least.
const MIN_REWRITE_BYTES: u64 = 16 << 20;

/// The journal's file name in a node's state dir.
pub const FILE_NAME: &str = "freshness.journal";

/// A rule as journaled: its kind, key, and newest hard and soft purge.
pub type JournaledRule<'a> = (RuleKind, &'a str, Rule);

/// The state a journal holds.
#[derive(Debug, Default)]
pub struct JournalState {
    /// The last purge applied, with every one before it.
    pub applied: u64,
    /// Objects fetched from before this sequence are unusable (the node reset there).
    pub floor: u64,
    /// Rules older than this were compacted away.
    pub compacted_below: u64,
    /// Every rule, each as the maximum of what was journaled for its kind and key.
    pub rules: Vec<(RuleKind, String, Rule)>,
}

/// A journal open for appending. Holds an exclusive lock on its file: one node a state dir.
pub struct RuleJournal {
    path: PathBuf,
    file: File,
    /// Where the next entry goes.
    end: u64,
    /// How far the file holds zeros (or entries).
    allocated: u64,
    /// Bytes of the snapshot the file starts with.
    snapshot_len: u64,
}

impl RuleJournal {
    /// Opens the journal in `dir`, or creates an empty one, and reads back its state.
    pub fn open(dir: &Path) -> io::Result<(Self, JournalState)> {
        let path = dir.join(FILE_NAME);
        if !path.exists() {
            let journal = Self::create(&path, &JournalState::default())?;
            return Ok((journal, JournalState::default()));
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        lock(&file, &path)?;
        let bytes = std::fs::read(&path)?;
        let (state, end, snapshot_len) = replay(&bytes).map_err(|e| invalid(&path, e))?;
        let journal = Self {
            path,
            file,
            end,
            allocated: bytes.len() as u64,
            snapshot_len,
        };
        Ok((journal, state))
    }

    /// Writes `state` as the whole journal in `dir` (replacing any), then opens it.
    pub fn create_in(dir: &Path, state: &JournalState) -> io::Result<Self> {
        Self::create(&dir.join(FILE_NAME), state)
    }

    fn create(path: &Path, state: &JournalState) -> io::Result<Self> {
        let rules = state.rules.iter().map(|(kind, key, rule)| (*kind, key.as_str(), *rule));
        let snapshot = encode_entry(SNAPSHOT, &[state.applied, state.floor, state.compacted_below], rules);
        let mut bytes = Vec::with_capacity(HEADER_LEN as usize + snapshot.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&VERSION.to_le_bytes());
        bytes.extend_from_slice(&snapshot);
        let end = bytes.len() as u64;
        bytes.resize((end + PREALLOCATE) as usize, 0);
        let new_path = path.with_extension("journal.new");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&new_path)?;
        lock(&file, &new_path)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::rename(&new_path, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            end,
            allocated: bytes.len() as u64,
            snapshot_len: end - HEADER_LEN,
        })
    }

    /// Appends a batch — `rules` raised, `applied` moved on — and returns once it is on disk.
    pub fn append(&mut self, applied: u64, rules: &[JournaledRule<'_>]) -> io::Result<()> {
        let entry = encode_entry(BATCH, &[applied], rules.iter().copied());
        let needed = self.end + entry.len() as u64;
        if needed > self.allocated {
            let zeros = (needed - self.allocated).max(PREALLOCATE);
            self.file.write_all_at(&vec![0; zeros as usize], self.allocated)?;
            // The file grew: its size is metadata, which only a full sync makes durable.
            self.file.sync_all()?;
            self.allocated += zeros;
        }
        self.file.write_all_at(&entry, self.end)?;
        self.file.sync_data()?;
        self.end = needed;
        Ok(())
    }

    /// Whether the batches appended outweigh the snapshot enough to be worth rewriting as
    /// one: at least 16 MiB, and twice the snapshot.
    pub fn needs_rewrite(&self) -> bool {
        let batches = self.end - HEADER_LEN - self.snapshot_len;
        batches > MIN_REWRITE_BYTES.max(2 * self.snapshot_len)
    }

    /// Replaces the whole journal by one snapshot of `state`.
    pub fn rewrite(&mut self, state: &JournalState) -> io::Result<()> {
        *self = Self::create(&self.path, state)?;
        Ok(())
    }
}

fn lock(file: &File, path: &Path) -> io::Result<()> {
    file.try_lock().map_err(|_| {
        io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("{} is in use by another process", path.display()),
        )
    })
}

fn invalid(path: &Path, reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {reason}", path.display()))
}

fn encode_entry<'a>(kind: u8, fields: &[u64], rules: impl ExactSizeIterator<Item = JournaledRule<'a>>) -> Vec<u8> {
    let mut payload = Vec::with_capacity(1 + 8 * fields.len() + 4 + rules.len() * 40);
    payload.push(kind);
    for field in fields {
        payload.extend_from_slice(&field.to_le_bytes());
    }
    payload.extend_from_slice(&(rules.len() as u32).to_le_bytes());
    for (kind, key, rule) in rules {
        payload.push(kind.code());
        payload.extend_from_slice(&rule.hard.to_le_bytes());
        payload.extend_from_slice(&rule.soft.to_le_bytes());
        payload.extend_from_slice(&(key.len() as u32).to_le_bytes());
        payload.extend_from_slice(key.as_bytes());
    }
    let mut entry = Vec::with_capacity(ENTRY_HEAD_LEN + payload.len());
    entry.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    entry.extend_from_slice(&blake3::hash(&payload).as_bytes()[..8]);
    entry.extend_from_slice(&payload);
    entry
}

/// The state in a journal's bytes, where its entries end, and the snapshot's length.
fn replay(bytes: &[u8]) -> Result<(JournalState, u64, u64), String> {
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        return Err("not a fresco purge journal".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    if version != VERSION {
        return Err(format!("journal version {version}; this build reads version {VERSION}"));
    }
    let mut state = JournalState::default();
    let mut rules = std::collections::HashMap::<(RuleKind, String), Rule>::new();
    let mut at = HEADER_LEN as usize;
    let mut snapshot_len = None;
    while let Some(payload) = next_entry(bytes, at) {
        let mut reader = Reader(payload);
        let kind = reader.u8()?;
        state.applied = state.applied.max(reader.u64()?);
        match (kind, snapshot_len) {
            (SNAPSHOT, None) => {
                state.floor = reader.u64()?;
                state.compacted_below = reader.u64()?;
                snapshot_len = Some((ENTRY_HEAD_LEN + payload.len()) as u64);
            }
            (BATCH, Some(_)) => {}
            _ => return Err(format!("unexpected entry {kind:?} at byte {at}")),
        }
        for _ in 0..reader.u32()? {
            let code = reader.u8()?;
            let kind = RuleKind::from_code(code).ok_or(format!("unknown rule kind {code} at byte {at}"))?;
            let rule = Rule {
                hard: reader.u64()?,
                soft: reader.u64()?,
            };
            let len = reader.u32()? as usize;
            let key =
                String::from_utf8(reader.take(len)?.to_vec()).map_err(|_| format!("a key not UTF-8 at byte {at}"))?;
            let held = rules.entry((kind, key)).or_default();
            *held = held.max(rule);
        }
        at += ENTRY_HEAD_LEN + payload.len();
    }
    let snapshot_len = snapshot_len.ok_or("no snapshot: the journal was never completely written")?;
    state.rules = rules.into_iter().map(|((kind, key), rule)| (kind, key, rule)).collect();
    Ok((state, at as u64, snapshot_len))
}

/// The payload of the entry at `at`, if a whole one with a matching digest is there.
fn next_entry(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let head = bytes.get(at..at + ENTRY_HEAD_LEN)?;
    let len = u32::from_le_bytes(head[..4].try_into().unwrap()) as usize;
    let payload = bytes.get(at + ENTRY_HEAD_LEN..at + ENTRY_HEAD_LEN + len)?;
    (len > 0 && blake3::hash(payload).as_bytes()[..8] == head[4..]).then_some(payload)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("an entry shorter than its contents".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(hard: u64, soft: u64) -> Rule {
        Rule { hard, soft }
    }

    fn sorted(mut rules: Vec<(RuleKind, String, Rule)>) -> Vec<(RuleKind, String, Rule)> {
        rules.sort_by(|a, b| (a.0.code(), &a.1).cmp(&(b.0.code(), &b.1)));
        rules
    }

    #[test]
    fn batches_replay_as_the_maximum_of_each_rule_and_a_rewrite_keeps_the_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, state) = RuleJournal::open(dir.path()).unwrap();
            assert_eq!((state.applied, state.rules.len()), (0, 0));
            journal
                .append(1, &[(RuleKind::Url, "shop\n/a.jpg", rule(1, 0))])
                .unwrap();
            journal
                .append(
                    3,
                    &[
                        (RuleKind::Url, "shop\n/a.jpg", rule(0, 3)),
                        (RuleKind::Tag, "sale", rule(2, 0)),
                    ],
                )
                .unwrap();
        }
        let (mut journal, state) = RuleJournal::open(dir.path()).unwrap();
        assert_eq!(state.applied, 3);
        let expected = vec![
            (RuleKind::Tag, "sale".to_string(), rule(2, 0)),
            (RuleKind::Url, "shop\n/a.jpg".to_string(), rule(1, 3)),
        ];
        assert_eq!(sorted(state.rules), expected);
        journal
            .rewrite(&JournalState {
                applied: 3,
                floor: 1,
                compacted_below: 2,
                rules: expected.clone(),
            })
            .unwrap();
        journal
            .append(4, &[(RuleKind::Prefix, "shop\n/p/", rule(4, 0))])
            .unwrap();
        drop(journal);
        let (_, state) = RuleJournal::open(dir.path()).unwrap();
        assert_eq!((state.applied, state.floor, state.compacted_below), (4, 1, 2));
        assert_eq!(state.rules.len(), 3);
    }

    #[test]
    fn an_entry_cut_short_or_altered_ends_the_journal_and_the_next_append_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let (mut journal, _) = RuleJournal::open(dir.path()).unwrap();
        journal
            .append(1, &[(RuleKind::Url, "shop\n/a.jpg", rule(1, 0))])
            .unwrap();
        let first_end = journal.end;
        journal
            .append(2, &[(RuleKind::Url, "shop\n/b.jpg", rule(2, 0))])
            .unwrap();
        drop(journal);
        // The second batch's last byte flipped, as a write torn by a crash might leave it.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        let end = std::fs::read(&path).unwrap().iter().rposition(|b| *b != 0).unwrap();
        file.write_all_at(&[0xff], end as u64).unwrap();
        drop(file);
        let (mut journal, state) = RuleJournal::open(dir.path()).unwrap();
        assert_eq!(
            (state.applied, state.rules.len()),
            (1, 1),
            "the torn batch is not applied"
        );
        assert_eq!(journal.end, first_end);
        journal
            .append(2, &[(RuleKind::Url, "shop\n/c.jpg", rule(2, 0))])
            .unwrap();
        drop(journal);
        let (_, state) = RuleJournal::open(dir.path()).unwrap();
        assert_eq!(state.applied, 2);
        assert!(state.rules.iter().any(|(_, key, _)| key == "shop\n/c.jpg"));
        assert!(!state.rules.iter().any(|(_, key, _)| key == "shop\n/b.jpg"));
    }

    #[test]
    fn appends_past_the_zeros_written_ahead_grow_the_file_and_survive() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = RuleJournal::open(dir.path()).unwrap();
        let key = "k".repeat(100_000);
        for seq in 1..=30 {
            journal.append(seq, &[(RuleKind::Tag, &key, rule(seq, 0))]).unwrap();
        }
        assert!(journal.allocated > PREALLOCATE * 2);
        drop(journal);
        let (_, state) = RuleJournal::open(dir.path()).unwrap();
        assert_eq!(state.applied, 30);
        assert_eq!(state.rules, vec![(RuleKind::Tag, key, rule(30, 0))]);
    }

    #[test]
    fn a_second_process_on_the_same_state_is_refused_and_a_foreign_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (_journal, _) = RuleJournal::open(dir.path()).unwrap();
        let second = RuleJournal::open(dir.path()).err().expect("a second opener is refused");
        assert!(second.to_string().contains("in use"), "{second}");
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(FILE_NAME), b"hello").unwrap();
        let foreign = RuleJournal::open(other.path())
            .err()
            .expect("a foreign file is refused");
        assert!(foreign.to_string().contains(FILE_NAME), "{foreign}");
    }
}
