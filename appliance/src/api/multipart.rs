//! A small `multipart/form-data` reader (RFC 7578) for the materials upload: the parts' names,
//! file names, declared content types and bytes. Bounded by the route's body limit; anything
//! malformed is refused, never guessed.

/// One part of a form.
#[derive(Debug)]
pub struct Part {
    /// The form field name.
    pub name: String,
    /// The part's declared `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The part's bytes.
    pub data: Vec<u8>,
}

/// Why a form could not be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// No `multipart/form-data` content type with a boundary.
    #[error("the body must be multipart/form-data with a boundary")]
    NotMultipart,
    /// The body does not follow the format.
    #[error("the multipart body is malformed: {0}")]
    Malformed(&'static str),
}

/// The boundary of a `multipart/form-data; boundary=...` content type.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let mut parts = content_type.split(';');
    let mime = parts.next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NotMultipart);
    }
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            if k.trim().eq_ignore_ascii_case("boundary") {
                let b = v.trim().trim_matches('"');
                if !b.is_empty() && b.len() <= 70 {
                    return Ok(b.to_owned());
                }
            }
        }
    }
    Err(MultipartError::NotMultipart)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| &hay[i..i + needle.len()] == needle)
}

/// Splits `body` into its parts.
pub fn parse(body: &[u8], boundary: &str) -> Result<Vec<Part>, MultipartError> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let mut pos = find(body, d, 0).ok_or(MultipartError::Malformed("no boundary"))? + d.len();
    let mut parts = Vec::new();
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            return Ok(parts);
        }
        if body.get(pos..pos + 2) != Some(b"\r\n") {
            return Err(MultipartError::Malformed("boundary not followed by CRLF"));
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos)
            .ok_or(MultipartError::Malformed("part without headers"))?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| MultipartError::Malformed("part headers are not UTF-8"))?;
        let mut name = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                return Err(MultipartError::Malformed("a part header line has no colon"));
            };
            let k = k.trim();
            if k.eq_ignore_ascii_case("content-disposition") {
                for attr in v.split(';').skip(1) {
                    if let Some((ak, av)) = attr.split_once('=') {
                        if ak.trim().eq_ignore_ascii_case("name") {
                            name = Some(av.trim().trim_matches('"').to_owned());
                        }
                    }
                }
            } else if k.eq_ignore_ascii_case("content-type") {
                content_type = Some(v.trim().to_owned());
            }
        }
        let data_start = head_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(d);
        let data_end = find(body, &closing, data_start).ok_or(MultipartError::Malformed(
            "part not terminated by a boundary",
        ))?;
        parts.push(Part {
            name: name.ok_or(MultipartError::Malformed("a part has no name"))?,
            content_type,
            data: body[data_start..data_end].to_vec(),
        });
        if parts.len() > 8 {
            return Err(MultipartError::Malformed("too many parts"));
        }
        pos = data_end + closing.len();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_form_with_a_file_is_read() {
        let b = boundary("multipart/form-data; boundary=\"XyZ\"").unwrap();
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"kind\"\r\n\r\nid_front\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--XyZ--\r\n";
        let parts = parse(body, &b).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "kind");
        assert_eq!(parts[0].data, b"id_front");
        assert_eq!(parts[1].content_type.as_deref(), Some("image/png"));
        assert_eq!(parts[1].data, b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            boundary("application/json"),
            Err(MultipartError::NotMultipart)
        );
        assert!(parse(b"--XyZ\r\nno headers", "XyZ").is_err());
    }
}
