//! The vault: sealing round trips only with the same key and credential, nonces are fresh,
//! key files are private, malformed keys are named errors, and secrets never show.

use std::os::unix::fs::PermissionsExt;

use super::*;

#[test]
fn a_sealed_value_opens_with_its_key_and_credential_only() {
    let key = MasterKey::generate();
    let sealed = key.seal("cred-1", b"xoxb-secret-token");
    assert!(
        !sealed
            .windows(b"xoxb-secret-token".len())
            .any(|window| window == b"xoxb-secret-token"),
        "the plaintext is not in the sealed bytes"
    );
    assert_eq!(key.open("cred-1", &sealed).unwrap(), b"xoxb-secret-token");

    let other = MasterKey::generate();
    let wrong_key = other.open("cred-1", &sealed).unwrap_err();
    assert!(matches!(wrong_key, VaultError::WrongKey { .. }));
    assert!(wrong_key.to_string().contains("rotate-key"), "{wrong_key}");
    let moved = key.open("cred-2", &sealed).unwrap_err();
    assert!(matches!(moved, VaultError::WrongKey { .. }));

    let mut tampered = sealed.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(matches!(
        key.open("cred-1", &tampered),
        Err(VaultError::WrongKey { .. })
    ));
    for garbage in [&[][..], &[2, 0, 0][..], &[SEALED_V1, 1, 2][..]] {
        assert!(matches!(
            key.open("cred-1", garbage),
            Err(VaultError::UnknownFormat { .. })
        ));
    }
}

#[test]
fn every_seal_takes_a_fresh_nonce() {
    let key = MasterKey::generate();
    let (first, second) = (key.seal("c", b"same"), key.seal("c", b"same"));
    assert_ne!(first[1..1 + NONCE_LEN], second[1..1 + NONCE_LEN]);
    assert_ne!(first, second);
}

#[test]
fn a_key_file_is_made_private_on_first_use_and_refused_when_others_can_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("master.key");
    let made = MasterKey::from_file(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = MasterKey::from_file(&path).unwrap();
    let sealed = made.seal("c", b"v");
    assert_eq!(
        again.open("c", &sealed).unwrap(),
        b"v",
        "the same key is read back"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = MasterKey::from_file(&path).unwrap_err();
    assert!(
        matches!(open, VaultError::KeyFileOpen { mode: 0o644, .. }),
        "{open}"
    );
    assert!(open.to_string().contains("chmod 600"), "{open}");
}

#[test]
fn malformed_keys_are_named_and_never_echoed() {
    let too_short = MasterKey::from_hex("abcd", "CAIRN_MASTER_KEY").unwrap_err();
    assert!(
        too_short.to_string().contains("4 characters, not 64"),
        "{too_short}"
    );
    let not_hex = "zz".repeat(32);
    let error = MasterKey::from_hex(&not_hex, "CAIRN_MASTER_KEY").unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("not hex digits") && text.contains("CAIRN_MASTER_KEY"),
        "{text}"
    );
    assert!(
        !text.contains(&not_hex),
        "the key text is not echoed: {text}"
    );
    let key = MasterKey::from_hex(&format!("  {}\n", "0f".repeat(32)), "test").unwrap();
    assert_eq!(key.to_hex(), "0f".repeat(32));
}

#[test]
fn secrets_and_keys_never_show_themselves() {
    let secret = Secret::new("hunter2");
    assert_eq!(secret.expose(), "hunter2");
    for shown in [
        format!("{secret}"),
        format!("{secret:?}"),
        serde_json::to_string(&secret).unwrap(),
        format!("{:?}", MasterKey::from_hex(&"ab".repeat(32), "t").unwrap()),
    ] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("abab"),
            "{shown}"
        );
        assert!(shown.contains("redacted"), "{shown}");
    }
}
