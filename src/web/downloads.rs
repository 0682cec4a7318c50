//! Responses that carry protected material out: a decrypted file and a marked zip package, both streamed
//! as they are decrypted, both always downloads (never rendered inline).

use rocket::http::{ContentType, Header};
use rocket::response::{self, Responder, Response};
use rocket::Request;

use crate::workflow::access::OpenedFile;

/// A decrypted file.
pub struct Download(pub OpenedFile);

impl From<OpenedFile> for Download {
    fn from(f: OpenedFile) -> Download {
        Download(f)
    }
}

/// `Content-Disposition` for a submitter-supplied name: an ASCII fallback plus the RFC 5987 UTF-8 form,
/// both stripped of anything that could act as a path, a control or a quote, and kept to 150 characters with the
/// extension (a long `report.exe (scan).pdf` is saved as a `.pdf`, not cut to its `.exe`).
pub fn content_disposition(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .filter(|c| {
            !c.is_control()
                && !matches!(*c, '/' | '\\' | '"' | '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
        })
        .collect();
    let cleaned = crate::workflow::content::shortened(cleaned.trim().trim_start_matches('.'), 150);
    let cleaned = if cleaned.is_empty() {
        "attachment".to_string()
    } else {
        cleaned
    };
    let ascii: String = cleaned
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = cleaned
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The length is sent as `Content-Length`, not left to chunked encoding: Rocket 0.5 ends a streamed body whose
/// read failed (a damaged or missing piece of ciphertext) as if it had finished, and in chunked encoding that
/// writes the terminating chunk, so the client would see a complete 200. With a declared length, hyper closes the
/// connection when the body ends short, and every client sees the download as cut off.
impl<'r> Responder<'r, 'static> for Download {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        Response::build()
            .header(ContentType::Binary)
            .header(Header::new(
                "Content-Disposition",
                content_disposition(&self.0.name),
            ))
            .header(Header::new("Content-Length", self.0.len.to_string()))
            .header(Header::new("X-Plaintext-Length", self.0.len.to_string()))
            .streamed_body(self.0.stream)
            .ok()
    }
}

/// A zip package, streamed as it is written; never cached. Its exact length, known before it is written, is sent
/// as `Content-Length` for the same reason as a file's: an archive cut short by a damaged stored file then ends
/// visibly short, not as a complete 200 (in chunked encoding Rocket 0.5 would finish it cleanly).
pub struct ZipDownload(pub crate::workflow::package::Package);

impl<'r> Responder<'r, 'static> for ZipDownload {
    fn respond_to(self, _req: &'r Request<'_>) -> response::Result<'static> {
        let name = content_disposition(&self.0.file_name);
        let mut response = Response::build();
        response
            .header(ContentType::ZIP)
            .header(Header::new("Content-Disposition", name));
        if let Some(len) = self.0.len {
            response.header(Header::new("Content-Length", len.to_string()));
        }
        response.streamed_body(self.0.body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    /// The name a browser saves under: of the UTF-8 form, decoded.
    fn saved_as(disposition: &str) -> String {
        let encoded = disposition.split("filename*=UTF-8''").nth(1).unwrap();
        percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .unwrap()
            .into_owned()
    }

    #[test]
    fn a_long_name_keeps_its_extension_and_no_bidi_control() {
        let name = format!("{}.exe (scan).pdf", "a".repeat(200));
        let saved = saved_as(&content_disposition(&name));
        assert!(saved.ends_with("….pdf"), "{saved}");
        assert_eq!(saved.chars().count(), 150);
        let fallback = content_disposition(&name);
        assert!(fallback.contains("_.pdf\";"), "{fallback}");
        // The Arabic letter mark reorders text like the other bidi controls: dropped with them.
        let saved = saved_as(&content_disposition("report\u{061C}\u{202E}fdp.exe"));
        assert_eq!(saved, "reportfdp.exe");
        // Short names are as they were.
        assert_eq!(saved_as(&content_disposition("..plan.pdf")), "plan.pdf");
    }
}
