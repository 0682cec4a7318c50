//! The 16 US critical infrastructure sectors (PCII.md, "What a submission carries"): the one list every form,
//! filter and check uses. The names themselves are the stored values.

pub const SECTORS: [&str; 16] = [
    "Chemical",
    "Commercial Facilities",
    "Communications",
    "Critical Manufacturing",
    "Dams",
    "Defense Industrial Base",
    "Emergency Services",
    "Energy",
    "Financial Services",
    "Food and Agriculture",
    "Government Facilities",
    "Healthcare and Public Health",
    "Information Technology",
    "Nuclear Reactors, Materials, and Waste",
    "Transportation Systems",
    "Water and Wastewater Systems",
];

/// The canonical name when `s` is one of the sectors (exact match: stored values are never normalised).
pub fn find(s: &str) -> Option<&'static str> {
    SECTORS.iter().copied().find(|name| *name == s)
}

pub fn is_sector(s: &str) -> bool {
    find(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_distinct_sectors() {
        let mut names = SECTORS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 16);
    }

    #[test]
    fn find_is_exact() {
        assert_eq!(find("Energy"), Some("Energy"));
        assert_eq!(find("energy"), None);
        assert_eq!(find(" Energy"), None);
        assert_eq!(
            find("Nuclear Reactors, Materials, and Waste"),
            Some("Nuclear Reactors, Materials, and Waste")
        );
    }
}
