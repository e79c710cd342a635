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
