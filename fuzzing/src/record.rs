//! The store's on-disk record decoder (`fresco_store::Record`): bytes read back from a disk
//! that may be damaged.
//!
//! Promises: a damaged record is an error, never a panic nor an allocation larger than the
//! input; a record that decodes encodes back to bytes that decode to the same encoding.

use fresco_store::Record;

/// The bytes are a record as read from disk.
pub fn run(data: &[u8]) {
    let Ok(record) = Record::decode_from(&mut &data[..]) else {
        return;
    };
    let mut encoded = Vec::new();
    record.encode_to(&mut encoded).expect("encoding to memory cannot fail");
    let again = Record::decode_from(&mut &encoded[..]).expect("an encoded record decodes");
    let mut reencoded = Vec::new();
    again.encode_to(&mut reencoded).expect("encoding to memory cannot fail");
    assert_eq!(encoded, reencoded, "a record changes when written again");
}
