package lcr.classify_test

import data.lcr.classify

_sct := "http://snomed.info/sct"

_loinc := "http://loinc.org"

_act_code := "http://terminology.hl7.org/CodeSystem/v3-ActCode"

_obs_cat := "http://terminology.hl7.org/CodeSystem/observation-category"

_v2_0074 := "http://terminology.hl7.org/CodeSystem/v2-0074"

_org_role := "https://fhir.nhs.uk/CodeSystem/organisation-role"

_cc(system, code) := {"coding": [{"system": system, "code": code}]}

_doc(system, code) := {"resourceType": "DocumentReference", "type": _cc(system, code)}

_composition(system, code) := {"resourceType": "Composition", "type": _cc(system, code)}

_coded(resource_type, field, system, code) := {"resourceType": resource_type, field: _cc(system, code)}

_categorised(resource_type, system, code) := {"resourceType": resource_type, "category": [_cc(system, code)]}

_setting("DocumentReference", code) := {
	"resourceType": "DocumentReference",
	"context": {"practiceSetting": _sct_cc(code)},
}

_setting("Encounter", code) := {"resourceType": "Encounter", "serviceType": _sct_cc(code)}

_setting("EpisodeOfCare", code) := {"resourceType": "EpisodeOfCare", "type": [_sct_cc(code)]}

_setting("Composition", code) := {"resourceType": "Composition", "category": [_sct_cc(code)]}

_sct_cc(code) := _cc(_sct, code)

_labelled(resource_type, system, code) := {
	"resourceType": resource_type,
	"meta": {"security": [{"system": system, "code": code}]},
}

_gp_meta := {"source": "https://gp.lcr.example/practice/F84001"}

_asserted_by(reference) := {"resourceType": "Condition", "asserter": {"reference": reference}}

_flag_by(reference) := {"resourceType": "Flag", "author": {"reference": reference}}

_condition_from(source) := {"resourceType": "Condition", "meta": {"source": source}}

# Names of the cases whose sections differ from the expected ones (empty when all pass).
_failures(cases, org_index) := {name |
	some name, case in cases
	not classify.sections_of(case[0], org_index) == case[1]
}

_gp_index := {"gp1": true, "trust1": false}

test_sections_of_resource_types if {
	_failures(
		{
			"flag": [{"resourceType": "Flag"}, {"alerts"}],
			"appointment": [{"resourceType": "Appointment"}, {"appointments"}],
			"encounter": [{"resourceType": "Encounter"}, {"visits_encounters"}],
			"allergy": [{"resourceType": "AllergyIntolerance"}, {"allergies"}],
			"condition": [_coded("Condition", "code", _sct, "44054006"), {"diagnoses"}],
			"family_history": [{"resourceType": "FamilyMemberHistory"}, {"family_history"}],
			"dispense": [{"resourceType": "MedicationDispense"}, {"issued_medications"}],
			"statement": [{"resourceType": "MedicationStatement"}, {"medications"}],
			"medication": [{"resourceType": "Medication"}, {"medications"}],
			"specimen": [{"resourceType": "Specimen"}, {"lab_results"}],
			"care_plan": [{"resourceType": "CarePlan"}, {"care_plans"}],
			"procedure": [_coded("Procedure", "code", _sct, "80146002"), {"procedures"}],
			"service_request": [{"resourceType": "ServiceRequest"}, {"referrals"}],
		},
		{},
	) == set()
}

test_sections_of_medication_request_intent if {
	_failures(
		{
			"order": [{"resourceType": "MedicationRequest", "intent": "order"}, {"issued_medications"}],
			"plan": [{"resourceType": "MedicationRequest", "intent": "plan"}, {"medications"}],
			"proposal": [{"resourceType": "MedicationRequest", "intent": "proposal"}, set()],
			"no_intent": [{"resourceType": "MedicationRequest"}, set()],
			"statement_with_intent": [{"resourceType": "MedicationStatement", "intent": "order"}, {"medications"}],
		},
		{},
	) == set()
}

test_sections_of_observation_category if {
	_failures(
		{
			"laboratory": [_categorised("Observation", _obs_cat, "laboratory"), {"lab_results"}],
			"social_history": [_categorised("Observation", _obs_cat, "social-history"), {"social_history"}],
			"vital_signs": [_categorised("Observation", _obs_cat, "vital-signs"), {"vital_signs"}],
			"no_category": [{"resourceType": "Observation", "code": _cc(_loinc, "8867-4")}, set()],
			"unknown_category": [_categorised("Observation", _obs_cat, "survey"), set()],
			"wrong_system": [_categorised("Observation", _sct, "laboratory"), set()],
			"no_system": [{"resourceType": "Observation", "category": [{"coding": [{"code": "laboratory"}]}]}, set()],
			"single_concept": [{"resourceType": "Observation", "category": _cc(_obs_cat, "vital-signs")}, {"vital_signs"}],
		},
		{},
	) == set()
}

test_sections_of_diagnostic_report if {
	_failures(
		{
			"lab": [_categorised("DiagnosticReport", _v2_0074, "LAB"), {"lab_results"}],
			"other_category": [_categorised("DiagnosticReport", _v2_0074, "RAD"), set()],
			"endoscopy_loinc": [_coded("DiagnosticReport", "code", _loinc, "27895-2"), {"endoscopy"}],
			"endoscopy_sct": [_coded("DiagnosticReport", "code", _sct, "73761001"), {"endoscopy"}],
			"lab_endoscopy": [
				object.union(
					_categorised("DiagnosticReport", _v2_0074, "LAB"),
					_coded("DiagnosticReport", "code", _sct, "76009000"),
				),
				{"lab_results", "endoscopy"},
			],
			"observation_with_lab_category_system": [_categorised("Observation", _v2_0074, "LAB"), set()],
		},
		{},
	) == set()
}

test_sections_of_document_types if {
	_failures(
		{
			"discharge_sct": [_doc(_sct, "373942005"), {"discharge_summaries"}],
			"discharge_loinc": [_doc(_loinc, "18842-5"), {"discharge_summaries"}],
			"discharge_composition": [_composition(_loinc, "18842-5"), {"discharge_summaries"}],
			"letter": [_doc(_sct, "823751000000102"), {"letters"}],
			"maternity": [_doc(_loinc, "26442-4"), {"maternity"}],
			"care_plan": [_doc(_sct, "734163000"), {"care_plans"}],
			"progress_note": [_doc(_loinc, "11506-3"), {"progress_notes"}],
			"referral_letter": [_doc(_sct, "25611000000107"), {"referrals"}],
			"report_371525003": [_doc(_sct, "371525003"), {"clinical_document_reports"}],
			"report_721981007": [_doc(_sct, "721981007"), {"clinical_document_reports"}],
			"report_722124004": [_composition(_sct, "722124004"), {"clinical_document_reports"}],
			"correspondence": [_doc(_loinc, "11488-4"), {"clinical_correspondence"}],
			"endoscopy": [_doc(_loinc, "27895-2"), {"endoscopy"}],
			"crisis_plan": [_doc(_sct, "736253002"), {"mental_health"}],
			"unknown_type": [_doc(_loinc, "34133-9"), set()],
			"code_in_wrong_system": [_doc(_loinc, "373942005"), set()],
			"no_type": [{"resourceType": "DocumentReference"}, set()],
			"type_on_other_resource": [_coded("Basic", "type", _sct, "373942005"), set()],
		},
		{},
	) == set()
}

test_sections_of_care_settings if {
	_failures(
		{
			"social_services_encounter": [_setting("Encounter", "310134006"), {"visits_encounters", "social_care"}],
			"social_services_episode": [_setting("EpisodeOfCare", "310134006"), {"social_care"}],
			"social_services_document": [_setting("DocumentReference", "310134006"), {"social_care"}],
			"maternity_310063007": [_setting("EpisodeOfCare", "310063007"), {"maternity"}],
			"maternity_714088003": [_setting("Composition", "714088003"), {"maternity"}],
			"community": [_setting("EpisodeOfCare", "413294000"), {"community_information"}],
			"endoscopy_unit": [_setting("Encounter", "310030000"), {"visits_encounters", "endoscopy"}],
			"psychiatry": [_setting("Encounter", "394587001"), {"visits_encounters", "mental_health"}],
			"psychology": [_setting("DocumentReference", "722162001"), {"mental_health"}],
			"service_type_list": [
				{"resourceType": "Encounter", "serviceType": [_cc(_sct, "310134006")]},
				{"visits_encounters", "social_care"},
			],
			"other_setting": [_setting("EpisodeOfCare", "408467006"), set()],
			"setting_on_other_resource": [_categorised("Observation", _sct, "310134006"), set()],
		},
		{},
	) == set()
}

test_sections_of_mental_health if {
	psy := _labelled("Observation", _act_code, "PSY")
	_failures(
		{
			"mental_disorder": [_coded("Condition", "code", _sct, "74732009"), {"diagnoses", "mental_health"}],
			"depressive": [_coded("Condition", "code", _sct, "35489007"), {"diagnoses", "mental_health"}],
			"schizophrenia": [_coded("Condition", "code", _sct, "58214004"), {"diagnoses", "mental_health"}],
			"anxiety": [_coded("Condition", "code", _sct, "197480006"), {"diagnoses", "mental_health"}],
			"bipolar": [_coded("Condition", "code", _sct, "13746004"), {"diagnoses", "mental_health"}],
			"psy_observation": [
				object.union(psy, _categorised("Observation", _obs_cat, "vital-signs")),
				{"vital_signs", "mental_health"},
			],
			"psy_unclassified_observation": [psy, {"mental_health"}],
			"crisis_care_plan": [_categorised("CarePlan", _sct, "736253002"), {"care_plans", "mental_health"}],
			"mental_disorder_code_on_procedure": [_coded("Procedure", "code", _sct, "74732009"), {"procedures"}],
		},
		{},
	) == set()
}

test_sections_of_security_labels if {
	every code in ["PSY", "MH", "BH", "PSYTHPN", "EMOTDIS"] {
		classify.sections_of(_labelled("Flag", _act_code, code), {}) == {
			"alerts",
			"mental_health",
		}
		classify.sections_of(object.union(_doc(_loinc, "11506-3"), {"securityLabel": [_cc(_act_code, code)]}), {}) == {
			"progress_notes",
			"mental_health",
		}
	}
	classify.sections_of(_labelled("Flag", _act_code, "HIV"), {}) == {"alerts"}
	classify.sections_of(_labelled("Flag", _sct, "PSY"), {}) == {"alerts"}
}

test_sections_of_endoscopy_procedures if {
	every code in ["423827005", "73761001", "76009000"] {
		classify.sections_of(_coded("Procedure", "code", _sct, code), {}) == {"procedures", "endoscopy"}
	}
}

test_sections_of_unclassified if {
	_failures(
		{
			"patient": [{"resourceType": "Patient", "id": "res-1"}, set()],
			"organization": [{"resourceType": "Organization", "id": "gp1"}, set()],
			"gp_sourced_organization": [{"resourceType": "Organization", "meta": _gp_meta}, set()],
			"practitioner": [{"resourceType": "Practitioner", "meta": _gp_meta}, set()],
			"practitioner_role": [{"resourceType": "PractitionerRole"}, set()],
			"location": [{"resourceType": "Location"}, set()],
			"psy_labelled_patient": [_labelled("Patient", _act_code, "PSY"), set()],
			"unknown_type": [{"resourceType": "Immunization"}, set()],
			"no_resource_type": [{"meta": _gp_meta}, set()],
			"numeric_resource_type": [{"resourceType": 7}, set()],
			"not_an_object": ["Flag", set()],
		},
		_gp_index,
	) == set()
}

test_sections_of_gp_source_prefix if {
	_failures(
		{
			"immunization": [{"resourceType": "Immunization", "meta": _gp_meta}, {"gp_records"}],
			"condition": [{"resourceType": "Condition", "meta": _gp_meta}, {"diagnoses", "gp_records"}],
			"document": [
				object.union(_doc(_loinc, "11506-3"), {"meta": _gp_meta}),
				{"progress_notes", "gp_records", "additional_gp_reports"},
			],
			"composition": [{"resourceType": "Composition", "meta": _gp_meta}, {"gp_records", "additional_gp_reports"}],
			"other_source": [_condition_from("https://trust.example/"), {"diagnoses"}],
			"prefix_not_at_start": [_condition_from("x-https://gp.lcr.example/"), {"diagnoses"}],
			"source_not_a_string": [_condition_from(["https://gp.lcr.example/"]), {"diagnoses"}],
		},
		{},
	) == set()
}

test_sections_of_gp_source_reference if {
	gp := {"reference": "Organization/gp1"}
	trust := {"reference": "Organization/trust1"}
	_failures(
		{
			"custodian": [{"resourceType": "DocumentReference", "custodian": gp}, {"gp_records", "additional_gp_reports"}],
			"author_list": [{"resourceType": "Composition", "author": [trust, gp]}, {"gp_records", "additional_gp_reports"}],
			"recorder": [{"resourceType": "AllergyIntolerance", "recorder": gp}, {"allergies", "gp_records"}],
			"asserter": [{"resourceType": "Condition", "asserter": gp}, {"diagnoses", "gp_records"}],
			"requester": [{"resourceType": "ServiceRequest", "requester": gp}, {"referrals", "gp_records"}],
			"performer_list": [{"resourceType": "Observation", "performer": [gp]}, {"gp_records"}],
			"performer_actor": [{"resourceType": "Procedure", "performer": [{"actor": gp}]}, {"procedures", "gp_records"}],
			"performer_single": [
				{"resourceType": "MedicationRequest", "intent": "order", "performer": gp},
				{"issued_medications", "gp_records"},
			],
			"absolute_reference": [_flag_by("https://lcr.example/fhir/Organization/gp1"), {"alerts", "gp_records"}],
			"versioned_reference": [_flag_by("Organization/gp1/_history/3"), {"alerts", "gp_records"}],
			"non_gp_organization": [{"resourceType": "Condition", "asserter": trust}, {"diagnoses"}],
			"organization_not_in_record": [_asserted_by("Organization/gp9"), {"diagnoses"}],
			"practitioner_reference": [_asserted_by("Practitioner/gp1"), {"diagnoses"}],
			"other_field": [{"resourceType": "Condition", "subject": gp}, {"diagnoses"}],
			"bare_organization": [_flag_by("Organization"), {"alerts"}],
			"reference_not_a_string": [_flag_by(1), {"alerts"}],
		},
		_gp_index,
	) == set()
}

test_sections_of_reads_codes_from_data if {
	letter := _doc(_sct, "1234567")
	classify.sections_of(letter, {}) == set()
	classify.sections_of(letter, {}) == {"letters"}
		with data.lcr.classification.document_types as {"letters": {"sct": ["1234567"]}}
}

test_sections_of_missing_code_table_is_unclassified if {
	classify.sections_of(_doc(_sct, "823751000000102"), {}) == set() with data.lcr.classification.document_types as {}
	classify.sections_of({"resourceType": "Flag"}, {}) == {"alerts"} with data.lcr.classification.security_labels as {}
}

test_primary_precedence if {
	classify.primary({"diagnoses", "gp_records"}) == "gp_records"
	classify.primary({"visits_encounters", "social_care"}) == "social_care"
	classify.primary({"vital_signs", "mental_health"}) == "mental_health"
	classify.primary({"procedures", "endoscopy"}) == "endoscopy"
	classify.primary({"progress_notes", "gp_records", "additional_gp_reports"}) == "additional_gp_reports"
	classify.primary({"alerts"}) == "alerts"
}

test_primary_empty_is_undefined if {
	not classify.primary(set())
}

test_primary_sections_missing_from_precedence_come_last if {
	classify.primary({"zz_new", "aa_new", "alerts"}) == "alerts"
	classify.primary({"zz_new", "aa_new"}) == "aa_new"
}

test_primary_follows_precedence_data if {
	classify.primary({"alerts", "mental_health"}) == "alerts"
		with data.lcr.classification.precedence as ["alerts", "mental_health"]
}

test_org_index_marks_gp_practices if {
	resources := [
		{"resourceType": "Organization", "id": "gp1", "type": [_cc(_org_role, "RO76")]},
		{"resourceType": "Organization", "id": "trust1", "type": [_cc(_org_role, "RO197")]},
		{"resourceType": "Organization", "id": "wrong_system", "type": [_cc(_sct, "RO76")]},
		{"resourceType": "Organization", "id": "untyped"},
		{"resourceType": "Organization"},
		{"resourceType": "Practitioner", "id": "gp2", "type": [_cc(_org_role, "RO76")]},
		"not a resource",
	]
	classify.org_index(resources) == {"gp1": true, "trust1": false, "wrong_system": false, "untyped": false}
}

test_org_index_duplicate_id_fails_closed if {
	resources := [
		{"resourceType": "Organization", "id": "org1"},
		{"resourceType": "Organization", "id": "org1", "type": _cc(_org_role, "RO76")},
	]
	classify.org_index(resources) == {"org1": true}
}

test_org_index_empty if {
	classify.org_index([]) == {}
}
