//! Reads a captcha the way a person would: decodes the appliance's PNG (8-bit gray, stored
//! deflate blocks) and matches each of the four digit slots against the 5x7 digit font the
//! picture is drawn with, over the offsets, shear and column wave the drawing may apply. A
//! reader, not a back door: it sees only the picture the channel is given.

use base64::Engine;

const GLYPHS: [[u8; 7]; 10] = [
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
];

fn decode(png: &[u8]) -> (i32, i32, Vec<u8>) {
    let mut pos = 8;
    let (mut w, mut h, mut idat) = (0, 0, Vec::new());
    while pos + 8 <= png.len() {
        let n = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &png[pos + 4..pos + 8];
        let data = &png[pos + 8..pos + 8 + n];
        if kind == b"IHDR" {
            w = u32::from_be_bytes(data[0..4].try_into().unwrap()) as i32;
            h = u32::from_be_bytes(data[4..8].try_into().unwrap()) as i32;
            assert_eq!(&data[8..10], &[8, 0], "8-bit grayscale");
        } else if kind == b"IDAT" {
            idat.extend_from_slice(data);
        }
        pos += 12 + n;
    }
    let mut raw = Vec::new();
    let mut p = 2; // zlib header
    loop {
        let last = idat[p] & 1 == 1;
        assert_eq!(idat[p] & 6, 0, "stored blocks");
        let len = u16::from_le_bytes([idat[p + 1], idat[p + 2]]) as usize;
        raw.extend_from_slice(&idat[p + 5..p + 5 + len]);
        p += 5 + len;
        if last {
            break;
        }
    }
    let mut img = Vec::with_capacity((w * h) as usize);
    for row in raw.chunks((w + 1) as usize) {
        assert_eq!(row[0], 0, "filter none");
        img.extend_from_slice(&row[1..]);
    }
    (w, h, img)
}

/// The four digits of a captcha whose PNG is given in base64.
pub fn read(png_base64: &str) -> String {
    let png = base64::engine::general_purpose::STANDARD
        .decode(png_base64)
        .unwrap();
    let (w, h, img) = decode(&png);
    let dark = |x: i32, y: i32| -> i32 {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            i32::from(img[(y * w + x) as usize] < 100)
        } else {
            0
        }
    };
    let mut best_total = i32::MIN;
    let mut best_digits = String::new();
    for phase_step in 0..16 {
        let phase = phase_step as f32 * std::f32::consts::TAU / 16.0;
        let shift = |x: i32| (2.5 * ((x as f32) / 9.0 + phase).sin()).round() as i32;
        let mut total = 0;
        let mut digits = String::new();
        for slot in 0..4 {
            let mut best = (i32::MIN, 0u8);
            for (d, glyph) in GLYPHS.iter().enumerate() {
                for jx in -3..=3 {
                    for jy in -5..=5 {
                        for s in -3..=3 {
                            let shear = s as f32 * 0.1;
                            let (x0, y0) = (12 + slot * 31 + jx, 11 + jy);
                            let mut score = 0;
                            for (gy, row) in glyph.iter().enumerate() {
                                for gx in 0..5 {
                                    let on = row & (0x10 >> gx) != 0;
                                    let mut hits = 0;
                                    for (dx, dy) in [(1, 1), (2, 2)] {
                                        let py = gy as i32 * 4 + dy;
                                        let px = gx * 4 + dx + (shear * (py - 14) as f32) as i32;
                                        let x = x0 + px;
                                        hits += dark(x, y0 + py + shift(x));
                                    }
                                    score += if on { hits } else { -hits };
                                }
                            }
                            if score > best.0 {
                                best = (score, d as u8);
                            }
                        }
                    }
                }
            }
            total += best.0;
            digits.push(char::from(b'0' + best.1));
        }
        if total > best_total {
            best_total = total;
            best_digits = digits;
        }
    }
    best_digits
}
