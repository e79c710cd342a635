//! The storage layer against both backends: every test runs the same calls on a fresh SQLite
//! file and on a fresh PostgreSQL database (tests/src/postgres.rs; PostgreSQL missing fails).

use std::collections::BTreeSet;

use ca_appliance::storage::{
    unix_now, AuditEntry, Backend, CertificateQuery, CrlRow, NewCa, NewCertificate, Revocation,
    RevocationError, StatusChange, Storage, StorageError, StoredResponse,
};
use system_tests::postgres::PgDatabase;

/// One opened backend; keeps its temp dir or database alive.
struct Opened {
    storage: Storage,
    _sqlite: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

/// A fresh SQLite file and a fresh PostgreSQL database, both migrated.
async fn backends() -> Vec<Opened> {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Storage::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .expect("open sqlite");
    assert_eq!(sqlite.backend(), Backend::Sqlite);
    let db = PgDatabase::create();
    let pg = Storage::open(&db.url()).await.expect("open postgres");
    assert_eq!(pg.backend(), Backend::Postgres);
    vec![
        Opened {
            storage: sqlite,
            _sqlite: Some(dir),
            _pg: None,
        },
        Opened {
            storage: pg,
            _sqlite: None,
            _pg: Some(db),
        },
    ]
}

fn entry(action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        actor: "test".into(),
        action: action.into(),
        target: target.into(),
        detail: serde_json::json!({"n": target}),
    }
}

async fn add_ca(s: &Storage, name: &str) -> i64 {
    s.authorities()
        .insert(
            &NewCa {
                name,
                generation: 1,
                parent_id: None,
                key_uri: "pkcs11:object=test",
                certificate: &[0x30, 0x00],
                not_before: 0,
                not_after: 4_000_000_000,
            },
            &entry("ceremony.create_ca", name),
        )
        .await
        .expect("insert CA")
}

fn cert(serial: &str, ca_id: i64) -> NewCertificate {
    NewCertificate {
        serial: serial.into(),
        ca_id,
        profile: "personal".into(),
        channel: Some("demo".into()),
        subject_dn: format!("CN={serial}"),
        not_before: 0,
        not_after: 4_000_000_000,
        der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
        crl_shard: None,
    }
}

/// Revokes `serial` (reason unspecified) as an operator.
async fn revoke_unspecified(s: &Storage, serial: &str) -> StatusChange {
    let revocation = Revocation {
        serial: serial.into(),
        reason: 0,
        invalidity_date: None,
    };
    s.revocations()
        .revoke(&revocation, "operator:t")
        .await
        .expect("revoke")
}

#[tokio::test]
async fn concurrent_inserts_commit_in_groups_and_a_duplicate_serial_fails_alone() {
    for b in backends().await {
        let s = &b.storage;
        let ca = add_ca(s, "issuing").await;
        let certs = s.certificates();
        let response = move |serial: &str| StoredResponse {
            ca_id: ca,
            serial: serial.into(),
            der: vec![0x30, 0x00],
            this_update: 1,
            next_update: 4_000_000_000,
            status_seq: 0,
        };
        let mut tasks = Vec::new();
        let mut saves = Vec::new();
        for i in 0..64 {
            let certs = certs.clone();
            // Serial 07 twice: exactly one of the two must be refused as a duplicate.
            let serial = if i == 63 {
                "07".to_owned()
            } else {
                format!("{i:02x}")
            };
            // Pre-signed responses share the writer's batches (and the retry of the batch
            // the duplicate fails): one for a certificate inserted just before is kept, one
            // for a certificate that does not exist is not.
            if i % 8 == 1 {
                let (certs, ocsp) = (certs.clone(), s.ocsp());
                let responses = [response(&serial), response(&format!("f{i:02x}"))];
                saves.push(tokio::spawn(async move {
                    certs
                        .insert(cert(&serial, ca), entry("certificate.issue", &serial))
                        .await?;
                    ocsp.save_responses(responses.to_vec()).await
                }));
                continue;
            }
            tasks.push(tokio::spawn(async move {
                certs
                    .insert(cert(&serial, ca), entry("certificate.issue", &serial))
                    .await
            }));
        }
        let mut ok = 0;
        let mut duplicates = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(()) => ok += 1,
                Err(StorageError::Duplicate(_)) => duplicates += 1,
                Err(e) => panic!("{:?}: unexpected {e}", s.backend()),
            }
        }
        for t in saves {
            let kept = t.await.expect("task").expect("insert and save");
            assert_eq!(kept, vec![true, false], "{:?}", s.backend());
            ok += 1;
        }
        assert_eq!((ok, duplicates), (63, 1), "{:?}", s.backend());
        let stored = s.ocsp().load_responses(ca, 2).await.expect("load");
        let mut serials: Vec<_> = stored.iter().map(|r| r.serial.as_str()).collect();
        serials.sort_unstable();
        assert_eq!(
            serials,
            ["01", "09", "11", "19", "21", "29", "31", "39"],
            "{:?}",
            s.backend()
        );
        let got = certs.get("3e").await.expect("get").expect("present");
        assert_eq!((got.ca_id, got.status.as_str()), (ca, "valid"));
        assert_eq!(got.der, vec![0x30, 0x03, 0x02, 0x01, 0x01]);
        assert_eq!(got.channel.as_deref(), Some("demo"));
        // The CA row plus 63 issued certificates, chained without a fork.
        assert_eq!(s.audit().verify().await.expect("verify"), Ok(64));
    }
}

#[tokio::test]
async fn revocations_feed_full_and_delta_crl_streams_and_crl_numbers_only_grow() {
    for b in backends().await {
        let s = &b.storage;
        let ca = add_ca(s, "issuing").await;
        for i in 0..10 {
            let serial = format!("{i:02x}");
            s.certificates()
                .insert(cert(&serial, ca), entry("certificate.issue", &serial))
                .await
                .expect("insert");
        }
        let rev = s.revocations();
        let revoke = |serial: &str, reason: i64| Revocation {
            serial: serial.into(),
            reason,
            invalidity_date: (reason == 1).then_some(1_700_000_000),
        };
        rev.revoke(&revoke("01", 1), "operator:t")
            .await
            .expect("revoke 01");
        rev.revoke(&revoke("02", 0), "operator:t")
            .await
            .expect("revoke 02");
        let base = s.crls().status_seq().await.expect("seq");
        rev.revoke(&revoke("03", 6), "operator:t")
            .await
            .expect("hold 03");
        rev.revoke(&revoke("04", 4), "operator:t")
            .await
            .expect("revoke 04");
        assert!(matches!(
            rev.revoke(&revoke("02", 4), "operator:t").await,
            Err(RevocationError::AlreadyRevoked)
        ));
        assert!(matches!(
            rev.revoke(&revoke("ff", 0), "operator:t").await,
            Err(RevocationError::NotFound)
        ));

        let mut full: Vec<CrlRow> = Vec::new();
        let seq = s
            .crls()
            .stream_entries::<StorageError, _>(ca, None, None, |r| {
                full.push(r);
                Ok(())
            })
            .await
            .expect("full stream");
        let listed: BTreeSet<(String, String)> = full
            .iter()
            .map(|r| (r.serial.clone(), r.status.clone()))
            .collect();
        let expect: BTreeSet<(String, String)> = [
            ("01", "revoked"),
            ("02", "revoked"),
            ("03", "hold"),
            ("04", "revoked"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(listed, expect, "{:?}", s.backend());
        let one = full.iter().find(|r| r.serial == "01").expect("01 listed");
        assert_eq!(
            (one.revocation_reason, one.invalidity_date),
            (Some(1), Some(1_700_000_000))
        );
        assert!(one.revoked_at.is_some());

        let mut delta = Vec::new();
        let seq2 = s
            .crls()
            .stream_entries::<StorageError, _>(ca, Some(base), None, |r| {
                delta.push(r.serial);
                Ok(())
            })
            .await
            .expect("delta stream");
        delta.sort();
        assert_eq!(
            delta,
            vec!["03".to_owned(), "04".to_owned()],
            "{:?}",
            s.backend()
        );
        assert_eq!(seq, seq2);

        rev.unhold("03", "operator:t").await.expect("unhold");
        let mut after_unhold = Vec::new();
        s.crls()
            .stream_entries::<StorageError, _>(ca, Some(seq), None, |r| {
                after_unhold.push((r.serial, r.status));
                Ok(())
            })
            .await
            .expect("delta after unhold");
        assert_eq!(after_unhold, vec![("03".to_owned(), "valid".to_owned())]);

        let a = s.crls().next_crl_number().await.expect("number");
        let c = s.crls().next_crl_number().await.expect("number");
        assert!(c > a, "{:?}: {c} after {a}", s.backend());
    }
}

#[tokio::test]
async fn a_shard_stream_reads_only_its_stored_shard_and_older_rows_are_backfilled() {
    for b in backends().await {
        let s = &b.storage;
        let ca = add_ca(s, "issuing").await;
        // 10..=17 stored with shard i % 2; 20..=23 stored before the column (no shard); 30 of
        // another profile with shard 0; 17 and 23 stay valid, 16 is on hold.
        let mut rows: Vec<(String, Option<i64>, &str)> = (0x10..=0x17)
            .map(|i| (format!("{i:02x}"), Some(i64::from(i % 2)), "personal"))
            .collect();
        rows.extend((0x20..=0x23).map(|i| (format!("{i:02x}"), None, "personal")));
        rows.push(("30".into(), Some(0), "other"));
        for (serial, shard, profile) in &rows {
            let mut c = cert(serial, ca);
            c.crl_shard = *shard;
            c.profile = (*profile).into();
            s.certificates()
                .insert(c, entry("certificate.issue", serial))
                .await
                .expect("insert");
        }
        let rev = s.revocations();
        for (serial, _, _) in rows.iter().filter(|r| r.0 != "17" && r.0 != "23") {
            let reason = if serial == "16" { 6 } else { 1 };
            rev.revoke(
                &Revocation {
                    serial: serial.clone(),
                    reason,
                    invalidity_date: None,
                },
                "operator:t",
            )
            .await
            .expect("revoke");
        }
        let shard = |k: i64| async move {
            let mut got = Vec::new();
            s.crls()
                .stream_shard::<StorageError, _>(ca, "personal", k, |r| {
                    got.push((r.serial, r.status));
                    Ok(())
                })
                .await
                .expect("shard stream");
            got.sort();
            got
        };
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert_eq!(
            shard(0).await,
            pairs(&[
                ("10", "revoked"),
                ("12", "revoked"),
                ("14", "revoked"),
                ("16", "hold")
            ]),
            "{:?}",
            s.backend()
        );
        assert_eq!(
            shard(1).await,
            pairs(&[("11", "revoked"), ("13", "revoked"), ("15", "revoked")])
        );

        // The older rows get the shard computed from their serial; the others keep theirs.
        let of = |serial: &str| i64::from_str_radix(serial, 16).ok().map(|v| v % 2);
        let set = s
            .crls()
            .backfill_crl_shards("personal", of)
            .await
            .expect("backfill");
        assert_eq!(set, 4, "{:?}", s.backend());
        assert_eq!(
            shard(0).await,
            pairs(&[
                ("10", "revoked"),
                ("12", "revoked"),
                ("14", "revoked"),
                ("16", "hold"),
                ("20", "revoked"),
                ("22", "revoked"),
            ])
        );
        assert_eq!(
            shard(1).await,
            pairs(&[
                ("11", "revoked"),
                ("13", "revoked"),
                ("15", "revoked"),
                ("21", "revoked"),
            ])
        );
        let again = s.crls().backfill_crl_shards("personal", of).await;
        assert_eq!(again.expect("second backfill"), 0);
    }
}

#[tokio::test]
async fn ocsp_statuses_are_read_by_list_and_a_response_for_an_old_status_is_not_kept() {
    for b in backends().await {
        let s = &b.storage;
        let ca = add_ca(s, "issuing").await;
        for serial in ["0a", "0b", "0c"] {
            s.certificates()
                .insert(cert(serial, ca), entry("certificate.issue", serial))
                .await
                .expect("insert");
        }
        let ocsp = s.ocsp();
        let serials = vec!["0a".to_owned(), "0c".to_owned(), "zz".to_owned()];
        let mut rows = ocsp.statuses_of(ca, &serials).await.expect("statuses");
        rows.sort_by(|x, y| x.serial.cmp(&y.serial));
        let names: Vec<&str> = rows.iter().map(|r| r.serial.as_str()).collect();
        assert_eq!(names, ["0a", "0c"], "{:?}", s.backend());
        let old_seq = rows[0].status_seq;

        let change = revoke_unspecified(s, "0a").await;
        let response = |seq: i64| StoredResponse {
            ca_id: ca,
            serial: "0a".into(),
            der: vec![seq as u8],
            this_update: 1,
            next_update: 4_000_000_000,
            status_seq: seq,
        };
        let kept = ocsp
            .save_responses(vec![response(change.status_seq), response(old_seq)])
            .await
            .expect("save");
        assert_eq!(kept, vec![true, false], "{:?}", s.backend());
        let loaded = ocsp.load_responses(ca, 2).await.expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].status_seq, change.status_seq);
        assert_eq!(ocsp.count_responses().await.expect("count"), 1);

        let found = s
            .console()
            .search(&CertificateQuery {
                status: Some("revoked".into()),
                ..Default::default()
            })
            .await
            .expect("search");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].serial, "0a");
        let all = s
            .console()
            .search(&CertificateQuery::default())
            .await
            .expect("search all");
        assert_eq!(all.len(), 3);
    }
}

#[tokio::test]
async fn the_presigning_pass_leaves_a_fresh_issuance_or_change_to_the_node_that_made_it() {
    for b in backends().await {
        let s = &b.storage;
        let ca = add_ca(s, "issuing").await;
        for serial in ["0a", "0b"] {
            s.certificates()
                .insert(cert(serial, ca), entry("certificate.issue", serial))
                .await
                .expect("insert");
        }
        let ocsp = s.ocsp();
        let due = |settled: i64, refresh_before: i64| {
            let ocsp = ocsp.clone();
            async move {
                let rows = ocsp
                    .due_for_signing(ca, refresh_before, unix_now(), settled, 100)
                    .await
                    .expect("due");
                let mut serials: Vec<String> = rows.into_iter().map(|r| r.serial).collect();
                serials.sort_unstable();
                serials
            }
        };
        let now = unix_now();
        let far = now + 1_000_000;
        // Issued just now, no response yet: the issuing node signs them, the pass waits.
        assert!(due(now - 3, now).await.is_empty(), "{:?}", s.backend());
        assert_eq!(due(now + 1, now).await, ["0a", "0b"], "{:?}", s.backend());

        let response = |serial: &str, seq: i64, next_update: i64| StoredResponse {
            ca_id: ca,
            serial: serial.into(),
            der: vec![0x30, 0x00],
            this_update: now,
            next_update,
            status_seq: seq,
        };
        let kept = ocsp
            .save_responses(vec![response("0a", 0, far), response("0b", 0, now + 60)])
            .await
            .expect("save");
        assert_eq!(kept, vec![true, true], "{:?}", s.backend());
        // Answered for their version: only a refresh makes one due, however fresh.
        assert!(due(now + 1, now).await.is_empty(), "{:?}", s.backend());
        assert_eq!(due(now - 3, now + 120).await, ["0b"], "{:?}", s.backend());

        revoke_unspecified(s, "0a").await;
        let now = unix_now();
        // Revoked just now: its stored answer is for the old version, but the revoking node
        // signs the new one; the pass takes it only once the change has settled.
        assert!(due(now - 3, now).await.is_empty(), "{:?}", s.backend());
        assert_eq!(due(now + 1, now).await, ["0a"], "{:?}", s.backend());
    }
}

#[tokio::test]
async fn upserts_replays_and_returned_ids_behave_alike() {
    for b in backends().await {
        let s = &b.storage;
        let limits = s.limits();
        limits
            .save_scopes("vrf_1", &["a".to_owned()], 10)
            .await
            .expect("save");
        limits
            .save_scopes("vrf_1", &["b".to_owned(), "c".to_owned()], 11)
            .await
            .expect("replace");
        assert_eq!(
            limits.scopes("vrf_1").await.expect("scopes"),
            Some(vec!["b".to_owned(), "c".to_owned()])
        );
        assert!(limits
            .remember_signature("sig", 100, 0)
            .await
            .expect("first"));
        assert!(!limits
            .remember_signature("sig", 101, 0)
            .await
            .expect("replay"));

        let keys = s.data_keys();
        let first = keys
            .add_active("pkcs11:object=w", &[1; 12], &[2; 40], "test")
            .await
            .expect("add");
        let second = keys
            .add_active("pkcs11:object=w", &[3; 12], &[4; 40], "test")
            .await
            .expect("add");
        assert!(second > first, "{:?}", s.backend());
        assert_eq!(keys.active_id().await.expect("active"), Some(second));
        let listed = keys.list().await.expect("list");
        assert_eq!(listed.len(), 2);
        assert!(listed
            .iter()
            .any(|k| k.id == first && !k.active && k.iv == [1; 12]));
    }
}

#[tokio::test]
async fn audit_appends_from_many_tasks_keep_one_unbroken_chain() {
    for b in backends().await {
        let s = &b.storage;
        let mut tasks = Vec::new();
        for i in 0..40 {
            let audit = s.audit();
            tasks.push(tokio::spawn(async move {
                audit.append(&entry("test.append", &i.to_string())).await
            }));
        }
        for t in tasks {
            t.await.expect("task").expect("append");
        }
        assert_eq!(
            s.audit().verify().await.expect("verify"),
            Ok(40),
            "{:?}",
            s.backend()
        );
    }
}

/// A second handle on the same database: another node (its own node id).
async fn second_node(o: &Opened) -> Storage {
    let url = match (&o._sqlite, &o._pg) {
        (Some(dir), _) => format!("sqlite://{}", dir.path().join("s.db").display()),
        (_, Some(db)) => db.url(),
        _ => unreachable!("one backend per Opened"),
    };
    Storage::open(&url).await.expect("second node")
}

#[tokio::test]
async fn a_lease_has_one_holder_until_it_expires_or_is_released_and_a_race_has_one_winning_node() {
    for o in backends().await {
        let a = o.storage.leases();
        let other = second_node(&o).await;
        let b = other.leases();
        assert_ne!(a.holder(), b.holder(), "each node its own id");
        let now = 1_000_000;
        assert!(
            a.take("crl:1", now, 30).await.expect("storage call"),
            "free lease taken"
        );
        assert!(
            !b.take("crl:1", now + 10, 30).await.expect("storage call"),
            "held by a live node"
        );
        assert!(
            a.take("crl:1", now + 20, 30).await.expect("storage call"),
            "renewed by its holder"
        );
        // Renewed at +20 for 30 s: still A's at +49, B's from +50.
        assert!(!b.take("crl:1", now + 49, 30).await.expect("storage call"));
        assert!(
            b.take("crl:1", now + 50, 30).await.expect("storage call"),
            "expired lease taken over"
        );
        assert!(
            !a.take("crl:1", now + 51, 30).await.expect("storage call"),
            "the old holder lost it"
        );
        assert_eq!(
            a.holder_of("crl:1").await.expect("storage call"),
            Some((b.holder().to_owned(), now + 80))
        );
        // A release lets the other node take it at once; releasing another's lease does nothing.
        a.release("crl:1").await.expect("storage call");
        assert!(!a.take("crl:1", now + 52, 30).await.expect("storage call"));
        b.release("crl:1").await.expect("storage call");
        assert!(a.take("crl:1", now + 52, 30).await.expect("storage call"));

        // Sixteen tasks on two nodes race for one free lease: exactly one wins.
        let mut tasks = Vec::new();
        for i in 0..16 {
            let l = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                l.take("race", now, 30).await.expect("storage call")
            }));
        }
        let mut winners = 0;
        for t in tasks {
            winners += usize::from(t.await.expect("storage call"));
        }
        let holder = a
            .holder_of("race")
            .await
            .expect("storage call")
            .expect("storage call")
            .0;
        // One node wins: its eight tasks all hold it (a renewal by the same holder), none of
        // the other node's does.
        assert_eq!(
            winners, 8,
            "holder {holder}: one node's tasks hold the lease"
        );
        assert!(holder == a.holder() || holder == b.holder());
    }
}

#[tokio::test]
async fn a_stored_crl_document_is_only_replaced_by_a_newer_number() {
    for o in backends().await {
        let docs = o.storage.crl_documents();
        assert_eq!(docs.number("x.crl").await.expect("storage call"), None);
        docs.put("x.crl", 5, b"five").await.expect("storage call");
        docs.put("x.crl", 3, b"three").await.expect("storage call");
        assert_eq!(
            docs.get("x.crl").await.expect("storage call"),
            Some((5, b"five".to_vec()))
        );
        docs.put("x.crl", 7, b"seven").await.expect("storage call");
        assert_eq!(docs.number("x.crl").await.expect("storage call"), Some(7));
        assert_eq!(
            docs.get("x.crl").await.expect("storage call"),
            Some((7, b"seven".to_vec()))
        );
    }
}
