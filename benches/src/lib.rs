//! What the timed bench binaries share: their `--seconds N --rounds R` options and the median
//! of their rounds.

/// How long each measurement runs and how many rounds are taken (the median is printed).
pub struct Options {
    /// Seconds per measurement.
    pub seconds: f64,
    /// Rounds per measurement.
    pub rounds: usize,
}

/// Reads `--seconds N --rounds R` from the command line (`default_seconds`, 3 rounds unless
/// given); refuses unknown options and non-positive values.
pub fn options(default_seconds: f64) -> Result<Options, String> {
    let mut opts = Options {
        seconds: default_seconds,
        rounds: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--seconds" => opts.seconds = value.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--rounds" => opts.rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if opts.rounds == 0 || opts.seconds <= 0.0 {
        return Err("--rounds and --seconds must be positive".into());
    }
    Ok(opts)
}

/// The median of the rounds' figures (the upper one of an even count); `xs` must not be empty.
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Signatures per second, and how many, made by `threads` threads signing 400-byte stand-ins
/// for a certificate's TBS (what issuance signs) with `key` and `alg` for `run`.
pub fn raw_sign_count(
    hsm: &hsm::Hsm,
    key: &hsm::KeyUri,
    alg: hsm::SignatureAlgorithm,
    threads: u64,
    run: std::time::Duration,
) -> Result<(f64, u64), String> {
    let start = std::time::Instant::now();
    let total = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> Result<u64, String> {
                    let mut n = 0u64;
                    while start.elapsed() < run {
                        let mut tbs = vec![0u8; 400];
                        tbs[..16]
                            .copy_from_slice(&(u128::from(n) ^ u128::from(t) << 64).to_be_bytes());
                        hsm.sign_blocking(key, alg, &tbs)
                            .map_err(|e| e.to_string())?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| "signing thread panicked".to_string())?
            })
            .sum::<Result<u64, String>>()
    })?;
    Ok((total as f64 / start.elapsed().as_secs_f64(), total))
}

/// Issues `body` on `conn` until `run` has passed since `start`; how many were issued (201),
/// or the first other answer as an error.
pub async fn issue_until(
    mut conn: system_tests::ApiConnection,
    body: Vec<u8>,
    start: std::time::Instant,
    run: std::time::Duration,
) -> Result<u64, String> {
    let mut issued = 0u64;
    while start.elapsed() < run {
        let (status, resp) = conn
            .request("POST", "/api/v1/certificates", Some(body.clone()))
            .await
            .map_err(|e| e.0)?;
        if status != 201 {
            return Err(format!(
                "issuance answered {status}: {}",
                String::from_utf8_lossy(&resp)
            ));
        }
        issued += 1;
    }
    Ok(issued)
}

/// User + system CPU seconds used so far by process `pid` ("self" for this one), from
/// `/proc/PID/stat`.
pub fn cpu_seconds(pid: &str) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').ok_or("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, String> {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| "odd /proc stat".to_owned())
    };
    Ok((ticks(11)? + ticks(12)?) / clock_ticks())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`, 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
