"""The seed's access-level table (SPEC.md §2), written out independently of the policy data
so the tests check the policies against the customer's promise, not against themselves."""

ADMIN = frozenset({"alerts", "appointments", "visits_encounters"})
SENIOR_CARER = frozenset(
    {
        "discharge_summaries",
        "alerts",
        "allergies",
        "appointments",
        "social_care",
        "diagnoses",
        "family_history",
        "issued_medications",
        "lab_results",
        "letters",
        "maternity",
        "medications",
        "care_plans",
        "procedures",
        "progress_notes",
        "referrals",
        "social_history",
        "visits_encounters",
        "vital_signs",
    }
)
REGISTERED_MANAGER = SENIOR_CARER | {
    "gp_records",
    "additional_gp_reports",
    "clinical_document_reports",
    "community_information",
    "clinical_correspondence",
    "endoscopy",
    "mental_health",
}
LEVELS: dict[str, frozenset[str]] = {
    "no_access": frozenset(),
    "admin": ADMIN,
    "senior_carer": SENIOR_CARER,
    "registered_manager": frozenset(REGISTERED_MANAGER),
}
ALL_SECTIONS = frozenset(REGISTERED_MANAGER)

# Demo residents (demo_upstream/residents/).
FULL = {"nhs_number": "9990000018", "dob": "1938-04-12"}
SMALL = {"nhs_number": "9990000026", "dob": "1945-11-02"}
PARTIAL_DOB = {"nhs_number": "9990000034", "dob": "1941-07-15"}
DUPLICATE = {"nhs_number": "9990000042", "dob": "1950-01-20"}
