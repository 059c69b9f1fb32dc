//! Reads the purge state nodes kept in redb before the [`journal`](super::journal), once, to
//! carry it over: a node upgraded in place keeps every purge it acknowledged.

use std::io;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::journal::{self, JournalState, RuleJournal};
use super::rules::{Rule, RuleKind};

const FILE_NAME: &str = "freshness.redb";
/// Rules by kind code + key: (hard seq, soft seq).
const RULES: TableDefinition<&[u8], (u64, u64)> = TableDefinition::new("rules");
/// `applied`, `floor`, `compacted_below`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// When `dir` holds a redb state and no journal: writes its state as the journal, removes
/// the redb file and returns the journal. Otherwise `None`.
pub fn migrate(dir: &Path) -> io::Result<Option<(RuleJournal, JournalState)>> {
    let old = dir.join(FILE_NAME);
    if !old.exists() || dir.join(journal::FILE_NAME).exists() {
        return Ok(None);
    }
    let state = read(&old).map_err(|e| io::Error::other(format!("{}: {e}", old.display())))?;
    let journal = RuleJournal::create_in(dir, &state)?;
    std::fs::remove_file(&old)?;
    tracing::info!(
        rules = state.rules.len(),
        applied = state.applied,
        "purge state carried over from redb"
    );
    Ok(Some((journal, state)))
}

fn read(path: &Path) -> Result<JournalState, redb::Error> {
    let db = Database::open(path)?;
    let txn = db.begin_read()?;
    let mut rules = Vec::new();
    if let Ok(table) = txn.open_table(RULES) {
        for entry in table.iter()? {
            let (k, v) = entry?;
            let key = k.value();
            let (hard, soft) = v.value();
            if let (Some(kind), Ok(text)) = (RuleKind::from_code(key[0]), std::str::from_utf8(&key[1..])) {
                rules.push((kind, text.to_string(), Rule { hard, soft }));
            }
        }
    }
    let mut state = JournalState {
        rules,
        ..JournalState::default()
    };
    if let Ok(meta) = txn.open_table(META) {
        let read = |name: &str| -> Result<u64, redb::Error> { Ok(meta.get(name)?.map_or(0, |v| v.value())) };
        (state.applied, state.floor, state.compacted_below) =
            (read("applied")?, read("floor")?, read("compacted_below")?);
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redb_state_is_carried_over_once_and_its_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(RULES).unwrap();
                table.insert(b"ushop\n/a.jpg".as_slice(), (7, 0)).unwrap();
                let mut meta = txn.open_table(META).unwrap();
                meta.insert("applied", 9).unwrap();
                meta.insert("compacted_below", 3).unwrap();
            }
            txn.commit().unwrap();
        }
        let (journal, state) = migrate(dir.path()).unwrap().expect("carried over");
        assert_eq!((state.applied, state.floor, state.compacted_below), (9, 0, 3));
        assert_eq!(
            state.rules,
            vec![(RuleKind::Url, "shop\n/a.jpg".into(), Rule { hard: 7, soft: 0 })]
        );
        assert!(!dir.path().join(FILE_NAME).exists());
        drop(journal);
        assert!(migrate(dir.path()).unwrap().is_none(), "once");
        let (_, reopened) = RuleJournal::open(dir.path()).unwrap();
        assert_eq!(
            (reopened.applied, reopened.compacted_below, reopened.rules.len()),
            (9, 3, 1)
        );
    }
}
