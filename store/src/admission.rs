//! Admission to the memory tier: which new objects may displace what a full memory holds.
//!
//! Image traffic is full of objects asked for once and never again (fresh uploads, crawlers,
//! the long tail of personal photos); the traces fresco is measured on send a quarter to a half
//! of their requests to them (`make bench-trace`). Each one stored in a full memory tier
//! pushes out an object that would have been hit again.
//! With [`Admission::SecondRequest`] a full memory tier takes a new object only when the
//! same key was filled before, within the [`Doorkeeper`]'s memory: the first fill of a key
//! goes to the disk tier only (its next request is a disk hit, which brings it into memory)
//! or, in a memory-only store, is served and not kept: the idea of TinyLFU's doorkeeper, a
//! Bloom filter in front of the frequency sketch. While the memory tier has room every object
//! is admitted: there is nothing to displace.

use parking_lot::Mutex;

/// Which fills enter the memory tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Admission {
    /// Every fill.
    All,
    /// Once the memory tier is full, a fill whose key was filled before (see the module).
    #[default]
    SecondRequest,
}

impl Admission {
    /// Every admission rule.
    pub const ALL: [Admission; 2] = [Self::All, Self::SecondRequest];

    /// The rule's name in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::SecondRequest => "second-request",
        }
    }

    /// The rule named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Remembers the keys filled recently, in two generations of a Bloom filter: a key is
/// remembered for one to two generations of `keys_per_generation` new keys, then forgotten
/// (so the memory it takes is fixed). False positives let in some first fills: under 3 % with
/// one generation nearly full (tested), more when both are (three probes, 8 bits a key).
pub(crate) struct Doorkeeper {
    generations: Mutex<Generations>,
}

struct Generations {
    current: Bloom,
    previous: Bloom,
    added: usize,
    keys_per_generation: usize,
}

/// A Bloom filter of 8 bits a key, probed at three places taken from the key's hash (which is
/// already uniform: pingora's cache key digest).
struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    fn for_keys(keys: usize) -> Self {
        let words = (keys * 8 / 64).next_power_of_two().max(16);
        Self { words: vec![0; words] }
    }

    fn probes(&self, hash: u128) -> [usize; 3] {
        let bits = (self.words.len() * 64) as u128;
        [hash % bits, (hash >> 42) % bits, (hash >> 84) % bits].map(|b| b as usize)
    }

    fn contains(&self, hash: u128) -> bool {
        self.probes(hash)
            .iter()
            .all(|&bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }

    fn add(&mut self, hash: u128) {
        for bit in self.probes(hash) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    fn clear(&mut self) {
        self.words.fill(0);
    }
}

impl Doorkeeper {
    /// A doorkeeper for a memory tier of `memory_bytes`: it remembers about one key per
    /// 16 KiB of memory in each generation (at least 1,024), several times the objects such a
    /// memory holds, so that a key's second fill is recognised for as long as the object would
    /// have stayed in memory had it been admitted.
    pub(crate) fn for_memory(memory_bytes: usize) -> Self {
        let keys_per_generation = (memory_bytes / (16 << 10)).clamp(1 << 10, 1 << 24);
        Self {
            generations: Mutex::new(Generations {
                current: Bloom::for_keys(keys_per_generation),
                previous: Bloom::for_keys(keys_per_generation),
                added: 0,
                keys_per_generation,
            }),
        }
    }

    /// Records a fill of `hash`; returns whether it was filled before, within memory.
    pub(crate) fn remember(&self, hash: u128) -> bool {
        let mut g = self.generations.lock();
        if g.current.contains(hash) {
            return true;
        }
        let seen_before = g.previous.contains(hash);
        g.current.add(hash);
        g.added += 1;
        if g.added >= g.keys_per_generation {
            let Generations { current, previous, .. } = &mut *g;
            std::mem::swap(current, previous);
            current.clear();
            g.added = 0;
        }
        seen_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> u128 {
        u128::from_be_bytes(*blake3::hash(&n.to_le_bytes()).as_bytes().first_chunk().unwrap())
    }

    #[test]
    fn a_key_is_let_in_on_its_second_fill() {
        let door = Doorkeeper::for_memory(64 << 20);
        assert!(!door.remember(key(1)));
        assert!(door.remember(key(1)));
        assert!(door.remember(key(1)));
        assert!(!door.remember(key(2)));
    }

    #[test]
    fn a_key_is_remembered_for_a_generation_and_then_forgotten() {
        let door = Doorkeeper::for_memory(0); // 1,024 keys a generation
        assert!(!door.remember(key(0)));
        for n in 1..1_024 {
            door.remember(key(n));
        }
        // A generation later it is still known (in the previous generation)...
        assert!(door.remember(key(0)));
        // ...which made it current again; two generations of other keys forget it.
        for n in 2_000..2_000 + 2 * 1_024 {
            door.remember(key(n));
        }
        assert!(!door.remember(key(0)));
    }

    #[test]
    fn few_first_fills_are_mistaken_for_second_ones() {
        let door = Doorkeeper::for_memory(1 << 30); // 65,536 keys a generation
        let mistaken = (0..60_000).filter(|&n| door.remember(key(n))).count();
        assert!(mistaken < 60_000 * 3 / 100, "{mistaken} of 60,000 new keys were let in");
    }

    #[test]
    fn names_read_back() {
        for a in Admission::ALL {
            assert_eq!(Admission::from_name(a.name()), Some(a));
        }
        assert_eq!(Admission::from_name("sometimes"), None);
    }
}
