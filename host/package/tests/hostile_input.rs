//! Hostile input to the package parser: random bytes and mutations of a
//! signed package never panic, never allocate without bound, and a mutated
//! signed package never verifies.

use std::collections::BTreeMap;

use allama_package::{Package, PackageFile, SigningKey, TrustPolicy, add_signature};
use proptest::prelude::*;

const MANIFEST: &str = "[package]\nname = \"p\"\nversion = \"1.0.0\"\npublisher = \"acme\"\n\n[[actions]]\nname = \"a\"\ninput = \"s/in.json\"\n";

fn signed() -> (Vec<u8>, TrustPolicy) {
    let (key, _) = SigningKey::generate().unwrap();
    let mut file = PackageFile {
        manifest: MANIFEST.as_bytes().to_vec(),
        files: BTreeMap::from([("s/in.json".to_string(), b"{\"type\":\"object\"}".to_vec())]),
        component: vec![7; 300],
        signatures: vec![],
    };
    add_signature(&mut file, &key);
    let mut policy = TrustPolicy {
        require_signatures: true,
        ..Default::default()
    };
    policy
        .publishers
        .insert("acme".into(), vec![key.public_key()]);
    (file.to_bytes(), policy)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Package::open(&bytes, "fuzz", &TrustPolicy::permissive());
        let mut with_magic = b"ALLAMA-PKG\x00\x01".to_vec();
        with_magic.extend_from_slice(&bytes);
        let _ = Package::open(&with_magic, "fuzz", &TrustPolicy::permissive());
    }

    #[test]
    fn huge_declared_lengths_are_refused_without_allocating(len in any::<u64>(), tag in 0u8..5) {
        let mut b = b"ALLAMA-PKG\x00\x01".to_vec();
        b.push(tag);
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&[0; 16]);
        prop_assert!(Package::open(&b, "fuzz", &TrustPolicy::permissive()).is_err());
    }

    #[test]
    fn any_mutation_of_a_signed_package_is_refused(edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let (bytes, policy) = signed();
        let mut t = bytes.clone();
        for (i, x) in &edits {
            let at = i.index(t.len());
            t[at] ^= x;
        }
        prop_assume!(t != bytes);
        prop_assert!(Package::open(&t, "fuzz", &policy).is_err());
    }

    #[test]
    fn manifests_from_random_text_never_panic(src in "\\PC{0,400}") {
        let _ = allama_package::Manifest::parse(&src, "fuzz.toml", &BTreeMap::<String, Vec<u8>>::new());
    }
}
