//! The 16 US critical infrastructure sectors (PPD-21), stored by their exact names.

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

pub fn is_sector(s: &str) -> bool {
    SECTORS.contains(&s)
}
