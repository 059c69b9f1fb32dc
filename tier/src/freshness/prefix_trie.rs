//! Prefix purge rules in a byte trie: a hit walks its primary key once, so its cost grows with
//! the key's length, not with the number of prefix purges (a site that purges a folder per
//! deploy has thousands).

use super::rules::Rule;

#[derive(Default)]
struct Node {
    /// Children by next byte, sorted.
    children: Vec<(u8, u32)>,
    rule: Option<Rule>,
}

/// Key prefixes and their rules.
pub struct PrefixTrie {
    nodes: Vec<Node>,
    rules: usize,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        Self {
            nodes: vec![Node::default()],
            rules: 0,
        }
    }
}

impl PrefixTrie {
    /// The rule of `prefix`, made if it has none.
    pub fn entry(&mut self, prefix: &str) -> &mut Rule {
        let mut at = 0usize;
        for &byte in prefix.as_bytes() {
            at = match self.nodes[at].children.binary_search_by_key(&byte, |(b, _)| *b) {
                Ok(i) => self.nodes[at].children[i].1 as usize,
                Err(i) => {
                    let child = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[at].children.insert(i, (byte, child as u32));
                    child
                }
            };
        }
        let rule = &mut self.nodes[at].rule;
        if rule.is_none() {
            self.rules += 1;
        }
        rule.get_or_insert_with(Rule::default)
    }

    /// The rule of exactly `prefix`.
    pub fn get(&self, prefix: &str) -> Option<Rule> {
        let mut at = 0usize;
        for &byte in prefix.as_bytes() {
            at = self.child(at, byte)?;
        }
        self.nodes[at].rule
    }

    /// The newest purges of every prefix of `key` (`key` itself included).
    pub fn covering(&self, key: &str) -> Rule {
        let mut rule = self.nodes[0].rule.unwrap_or_default();
        let mut at = 0usize;
        for &byte in key.as_bytes() {
            let Some(next) = self.child(at, byte) else { break };
            at = next;
            if let Some(r) = self.nodes[at].rule {
                rule = rule.max(r);
            }
        }
        rule
    }

    /// Every prefix with its rule, in byte order.
    pub fn entries(&self) -> Vec<(String, Rule)> {
        let mut entries = Vec::with_capacity(self.rules);
        let mut path = Vec::new();
        self.collect(0, &mut path, &mut entries);
        entries
    }

    fn collect(&self, at: usize, path: &mut Vec<u8>, entries: &mut Vec<(String, Rule)>) {
        if let Some(rule) = self.nodes[at].rule {
            // Every rule's path is a whole prefix that was given as text.
            entries.push((String::from_utf8_lossy(path).into_owned(), rule));
        }
        for &(byte, child) in &self.nodes[at].children {
            path.push(byte);
            self.collect(child as usize, path, entries);
            path.pop();
        }
    }

    /// Number of prefixes with a rule.
    pub fn len(&self) -> usize {
        self.rules
    }

    /// Whether no prefix has a rule.
    pub fn is_empty(&self) -> bool {
        self.rules == 0
    }

    fn child(&self, at: usize, byte: u8) -> Option<usize> {
        let children = &self.nodes[at].children;
        children
            .binary_search_by_key(&byte, |(b, _)| *b)
            .ok()
            .map(|i| children[i].1 as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_of_a_key_counts_and_nothing_else() {
        let mut trie = PrefixTrie::default();
        trie.entry("s\n/img/").raise(3, false);
        trie.entry("s\n/img/a").raise(5, true);
        trie.entry("s\n/imgs").raise(9, false);
        trie.entry("s\n/img/").raise(4, false);
        assert_eq!(trie.len(), 3);
        assert_eq!(trie.covering("s\n/img/a.jpg"), Rule { hard: 4, soft: 5 });
        assert_eq!(trie.covering("s\n/img/b.jpg"), Rule { hard: 4, soft: 0 });
        assert_eq!(trie.covering("s\n/im"), Rule::default());
        assert_eq!(trie.covering("t\n/img/a.jpg"), Rule::default());
        assert_eq!(trie.get("s\n/img/"), Some(Rule { hard: 4, soft: 0 }));
        assert_eq!(trie.get("s\n/img"), None);
    }

    #[test]
    fn it_agrees_with_a_scan_of_every_prefix() {
        let prefixes: Vec<String> = (0..500)
            .map(|i| format!("s\n/{}/{}", i % 7, "ab".repeat(i % 5)))
            .chain(["".to_string(), "s".into(), "s\n/é".into()])
            .collect();
        let mut trie = PrefixTrie::default();
        for (seq, prefix) in prefixes.iter().enumerate() {
            trie.entry(prefix).raise(seq as u64 + 1, seq % 3 == 0);
        }
        let scan = |key: &str| {
            let mut rule = Rule::default();
            for p in prefixes.iter().filter(|p| key.starts_with(p.as_str())) {
                rule = rule.max(trie.get(p).unwrap());
            }
            rule
        };
        for key in ["s\n/3/ababab.jpg", "s\n/3/", "s\n/éa", "s\n/6/abab", "x", ""] {
            assert_eq!(trie.covering(key), scan(key), "{key:?}");
        }
    }
}
