//! The people of a household as the registry holds them: phone numbers checked loosely against
//! Chinese mobile and landline shapes and kept in one normal form, the masks read-only roles see
//! (`王*`, `138****5678`), and the terms of a household search (`老王, 西关村`).

use serde::Serialize;
use utoipa::ToSchema;

/// A household's caretaker (管护员) as an order or a search shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Caretaker {
    pub name: String,
    pub phone: String,
}

/// A household with its people, as the API shows it: to operators, township officers of its
/// township and the team of an order at the house in full; to read-only roles masked
/// (`masked: true`: `王*`, `138****5678`, the house number starred).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HouseholdView {
    pub id: String,
    pub village_id: String,
    pub village_name: String,
    pub township_id: String,
    pub address: String,
    pub resident: String,
    /// Phone numbers in normal form (digits), the first the one to ring first.
    pub phones: Vec<String>,
    /// An elderly person living alone, or another reason to come first.
    pub vulnerable: bool,
    /// The household's own caretaker, else the village's; `None` when the village has none.
    pub caretaker: Option<Caretaker>,
    /// The household's registered devices.
    pub device_ids: Vec<String>,
    /// A home, or a village public building or greenhouse (`registry::SiteType`).
    pub site_type: super::SiteType,
    /// Names, numbers and the house number are masked for the caller's role.
    pub masked: bool,
}

impl HouseholdView {
    /// The view a read-only role gets.
    pub fn mask(mut self) -> HouseholdView {
        self.resident = mask_name(&self.resident);
        self.phones = self.phones.iter().map(|p| mask_phone(p)).collect();
        self.address = mask_address(&self.address);
        if let Some(caretaker) = &mut self.caretaker {
            caretaker.name = mask_name(&caretaker.name);
            caretaker.phone = mask_phone(&caretaker.phone);
        }
        self.masked = true;
        self
    }
}

/// Most phone numbers one household keeps (the resident's, a child's, a neighbour's).
pub const MAX_PHONES: usize = 3;
/// Most characters of a resident's name.
pub const MAX_NAME_CHARS: usize = 40;
/// Most characters of an address.
pub const MAX_ADDRESS_CHARS: usize = 200;

/// Separators between the phones of one CSV field (`;` or the full-width `；`).
const PHONE_SEPARATORS: [char; 2] = [';', '；'];

/// One phone number in normal form: spaces and dashes removed, a leading `+86` dropped, then
/// only digits in one of the loose shapes: a mobile number (11 digits from `1`), a landline with
/// its area code (10 to 12 digits from `0`), a local landline (7 or 8 digits), or a service
/// number (5 digits from `9`, such as 95598).
pub fn normalise_phone(text: &str) -> Result<String, String> {
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '\u{3000}' | '(' | ')'))
        .collect();
    let digits = compact.strip_prefix("+86").unwrap_or(&compact);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a phone number (digits, optionally +86, spaces and dashes)"
        ));
    }
    let shaped = match digits.as_bytes()[0] {
        b'1' => digits.len() == 11,
        b'0' => (10..=12).contains(&digits.len()),
        b'9' => digits.len() == 5 || (7..=8).contains(&digits.len()),
        _ => (7..=8).contains(&digits.len()),
    };
    if !shaped {
        return Err(format!(
            "{text:?} is not a mobile (11 digits from 1) or landline number (0 + area code, or 7-8 digits)"
        ));
    }
    Ok(digits.to_owned())
}

/// The phones of one CSV field: one or more numbers separated by `;`, at most [`MAX_PHONES`],
/// each in normal form, none twice.
pub fn parse_phones(text: &str) -> Result<Vec<String>, String> {
    let mut phones: Vec<String> = Vec::new();
    for part in text.split(PHONE_SEPARATORS) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let phone = normalise_phone(part)?;
        if !phones.contains(&phone) {
            phones.push(phone);
        }
    }
    if phones.is_empty() {
        return Err("is empty".into());
    }
    if phones.len() > MAX_PHONES {
        return Err(format!(
            "has {} phone numbers; a household keeps at most {MAX_PHONES}",
            phones.len()
        ));
    }
    Ok(phones)
}

/// The phones as one CSV field and one store column: `;` between them.
pub fn join_phones(phones: &[String]) -> String {
    phones.join(";")
}

/// The phones of a store column (see [`join_phones`]).
pub fn split_phones(text: &str) -> Vec<String> {
    text.split(';')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A name as read-only roles see it: the surname and one star (`王*`), whatever its length.
pub fn mask_name(name: &str) -> String {
    match name.chars().next() {
        Some(first) => format!("{first}*"),
        None => String::new(),
    }
}

/// A phone as read-only roles see it: the first three and the last four digits
/// (`138****5678`); a short number keeps only its last two.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() >= 8 {
        let head: String = chars[..3].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}****{tail}")
    } else {
        let tail: String = chars[chars.len().saturating_sub(2)..].iter().collect();
        format!("****{tail}")
    }
}

/// An address as read-only roles see it: the village and group stay readable, every digit
/// (the house number) becomes a star.
pub fn mask_address(address: &str) -> String {
    address
        .chars()
        .map(|c| if c.is_ascii_digit() { '*' } else { c })
        .collect()
}

/// Most terms a search takes; further ones are ignored.
pub const MAX_TERMS: usize = 6;
/// Most characters of one term.
const MAX_TERM_CHARS: usize = 40;

/// One term of a household search and the ways it may match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerm {
    /// The term as typed (trimmed, lowercase ASCII).
    pub text: String,
    /// The digits of a phone number in normal form, when the term is one (4 or more digits,
    /// spaces, dashes and `+86` allowed).
    pub phone_digits: Option<String>,
    /// The surname of a `老王` / `小王` form.
    pub surname: Option<String>,
    /// The term may be (part of) a device or household id: ASCII letters, digits and dashes.
    pub id_like: bool,
}

/// Splits a search into terms: commas (`,` `，` `、`), semicolons and white space separate
/// them; every term must match (AND).
/// Digits written in groups (`138 0013 8000`, `+86 138-0013-8000`) are one term: white space
/// between pieces made only of digits, `+` and `-` does not separate them.
pub fn search_terms(query: &str) -> Vec<SearchTerm> {
    let phoneish = |piece: &str| {
        piece
            .chars()
            .all(|c| c.is_ascii_digit() || c == '+' || c == '-')
    };
    let mut pieces: Vec<String> = Vec::new();
    for chunk in query.split([',', '，', '、', ';', '；']) {
        let mut previous_phoneish = false;
        for piece in chunk.split_whitespace() {
            let this_phoneish = phoneish(piece);
            match pieces.last_mut() {
                Some(last) if previous_phoneish && this_phoneish => last.push_str(piece),
                _ => pieces.push(piece.to_owned()),
            }
            previous_phoneish = this_phoneish;
        }
    }
    pieces
        .iter()
        .take(MAX_TERMS)
        .map(|raw| {
            let text: String = raw.chars().take(MAX_TERM_CHARS).collect::<String>();
            let text = text.to_ascii_lowercase();
            let digits = text.strip_prefix("+86").unwrap_or(&text);
            let phone_digits = (digits.len() >= 4
                && digits.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
            .then(|| digits.replace('-', ""))
            .filter(|d| d.len() >= 4);
            let mut chars = text.chars();
            let surname = match (chars.next(), chars.next(), chars.next()) {
                (Some('老' | '小'), Some(name), None) if !name.is_ascii() => {
                    Some(name.to_string())
                }
                _ => None,
            };
            let id_like = text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            SearchTerm {
                text,
                phone_digits,
                surname,
                id_like,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_checked_loosely_and_kept_in_one_form() {
        assert_eq!(normalise_phone("138-0013-8000"), Ok("13800138000".into()));
        assert_eq!(
            normalise_phone("+86 138 0013 8000"),
            Ok("13800138000".into())
        );
        assert_eq!(normalise_phone("010-6918 1234"), Ok("01069181234".into()));
        assert_eq!(normalise_phone("6918 1234"), Ok("69181234".into()));
        assert_eq!(normalise_phone("95598"), Ok("95598".into()));
        assert!(normalise_phone("1380013800").is_err(), "10 digits from 1");
        assert!(normalise_phone("138001380001").is_err(), "12 digits from 1");
        assert!(normalise_phone("138OO138000").is_err(), "letters");
        assert!(normalise_phone("c").is_err());
        assert!(normalise_phone("+86").is_err());
    }

    #[test]
    fn a_field_holds_a_few_phones_without_repeats() {
        assert_eq!(
            parse_phones("13800138000; 010-69181234；13800138000"),
            Ok(vec!["13800138000".into(), "01069181234".into()])
        );
        assert!(parse_phones(" ; ").is_err());
        assert!(
            parse_phones("13800138001;13800138002;13800138003;13800138004")
                .expect_err("four")
                .contains("at most 3")
        );
        assert_eq!(
            split_phones(&join_phones(&["1".into(), "2".into()])),
            vec!["1", "2"]
        );
    }

    #[test]
    fn masks_keep_the_surname_and_the_ends_of_a_number() {
        assert_eq!(mask_name("王秀英"), "王*");
        assert_eq!(mask_name("王"), "王*");
        assert_eq!(mask_name(""), "");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_phone("01069181234"), "010****1234");
        assert_eq!(mask_phone("95598"), "****98");
        assert_eq!(mask_address("西关村 3 组 12 号"), "西关村 * 组 ** 号");
    }

    #[test]
    fn a_search_splits_on_commas_and_spaces_and_reads_surname_forms() {
        let terms = search_terms("老王, 西关村，138-0013 yanqing-xiguan-0001");
        assert_eq!(
            search_terms("+86 138 0013-8000")[0].phone_digits.as_deref(),
            Some("13800138000")
        );
        assert_eq!(search_terms("1234, 5678").len(), 2);
        let texts: Vec<&str> = terms.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["老王", "西关村", "138-0013", "yanqing-xiguan-0001"]);
        assert_eq!(terms[0].surname.as_deref(), Some("王"));
        assert_eq!(terms[1].surname, None);
        assert_eq!(terms[2].phone_digits.as_deref(), Some("1380013"));
        assert!(terms[3].id_like && terms[3].phone_digits.is_none());
        assert_eq!(
            search_terms("5678")[0].phone_digits.as_deref(),
            Some("5678")
        );
        assert_eq!(search_terms("567")[0].phone_digits, None);
        assert_eq!(search_terms(" , ，"), vec![]);
        assert_eq!(search_terms("a b c d e f g h").len(), MAX_TERMS);
    }
}
