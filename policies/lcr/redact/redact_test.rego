package lcr.redact_test

import data.lcr.config
import data.lcr.redact

_sct := "http://snomed.info/sct"

_loinc := "http://loinc.org"

_cc(system, code) := {"coding": [{"system": system, "code": code}]}

_doc(system, code) := {"resourceType": "DocumentReference", "type": _cc(system, code)}

_observation(category) := {
	"resourceType": "Observation",
	"category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category", category)],
}

_psy := {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}

_gp_meta := {"source": "https://gp.lcr.example/practice/F84001"}

_gp_practice := {
	"resourceType": "Organization",
	"id": "gp1",
	"type": [_cc("https://fhir.nhs.uk/CodeSystem/organisation-role", "RO76")],
}

_patient := {"resourceType": "Patient", "id": "res-1"}

# One representative resource per section: it is counted under that section.
_representatives := {
	"alerts": {"resourceType": "Flag"},
	"appointments": {"resourceType": "Appointment"},
	"visits_encounters": {"resourceType": "Encounter"},
	"discharge_summaries": _doc(_sct, "373942005"),
	"allergies": {"resourceType": "AllergyIntolerance"},
	"social_care": {"resourceType": "EpisodeOfCare", "type": [_cc(_sct, "310134006")]},
	"diagnoses": {"resourceType": "Condition", "code": _cc(_sct, "44054006")},
	"family_history": {"resourceType": "FamilyMemberHistory"},
	"issued_medications": {"resourceType": "MedicationRequest", "intent": "order"},
	"medications": {"resourceType": "MedicationStatement"},
	"lab_results": _observation("laboratory"),
	"letters": _doc(_sct, "823751000000102"),
	"maternity": _doc(_loinc, "26442-4"),
	"care_plans": {"resourceType": "CarePlan"},
	"procedures": {"resourceType": "Procedure", "code": _cc(_sct, "80146002")},
	"progress_notes": _doc(_loinc, "11506-3"),
	"referrals": {"resourceType": "ServiceRequest"},
	"social_history": _observation("social-history"),
	"vital_signs": _observation("vital-signs"),
	"gp_records": {"resourceType": "Immunization", "meta": _gp_meta},
	"additional_gp_reports": {"resourceType": "DocumentReference", "custodian": {"reference": "Organization/gp1"}},
	"clinical_document_reports": _doc(_sct, "371525003"),
	"community_information": {"resourceType": "EpisodeOfCare", "type": [_cc(_sct, "413294000")]},
	"clinical_correspondence": _doc(_loinc, "11488-4"),
	"endoscopy": {"resourceType": "Procedure", "code": _cc(_sct, "73761001")},
	"mental_health": {"resourceType": "Condition", "code": _cc(_sct, "35489007")},
}

_section_names := [section | some section, _ in _representatives]

# The record: the GP practice, the resident, then one resource per section.
_record := array.concat([_gp_practice, _patient], [_representatives[section] | some section in _section_names])

_record_input(allowed) := {"allowed_sections": allowed, "patient_id": "res-1", "resources": _record}

# Representatives the level may see that were withheld, and ones shown that it may not see.
_mismatches(result, allowed) := {section |
	some i, section in _section_names
	section in allowed
	not result.keep[i + 2]
} | {section |
	some i, section in _section_names
	not section in allowed
	result.keep[i + 2]
}

_kept(result) := count([kept | some kept in result.keep; kept])

test_result_representatives_are_counted_under_their_section if {
	result := redact.result with input as _record_input(config.access_levels.registered_manager)
	result.sections == array.concat([null, "patient"], _section_names)
	count(_section_names) == 26
}

test_result_no_access_level_sees_nothing if {
	result := redact.result with input as _record_input(config.access_levels.no_access)
	_mismatches(result, config.access_levels.no_access) == set()
	_kept(result) == 0
}

test_result_admin_level_sees_admin_sections if {
	result := redact.result with input as _record_input(config.access_levels.admin)
	_mismatches(result, config.access_levels.admin) == set()
	_kept(result) == 4 # 3 sections and the header
}

test_result_senior_carer_level_sees_senior_sections if {
	result := redact.result with input as _record_input(config.access_levels.senior_carer)
	_mismatches(result, config.access_levels.senior_carer) == set()
	_kept(result) == 20
}

test_result_registered_manager_level_sees_all_sections if {
	result := redact.result with input as _record_input(config.access_levels.registered_manager)
	_mismatches(result, config.access_levels.registered_manager) == set()
	result.keep == array.concat([false], [true | some _ in array.slice(_record, 1, 28)])
}

test_result_patient_header_kept_when_a_section_is_allowed if {
	redact.result == {"sections": ["patient", "alerts"], "keep": [true, true]} with input as {
		"allowed_sections": ["alerts"],
		"patient_id": "res-1",
		"resources": [_patient, {"resourceType": "Flag"}],
	}
}

test_result_patient_header_withheld_when_nothing_is_allowed if {
	redact.result == {"sections": ["patient", "alerts"], "keep": [false, false]} with input as {
		"allowed_sections": [],
		"patient_id": "res-1",
		"resources": [_patient, {"resourceType": "Flag"}],
	}
}

test_result_patient_header_only_for_the_matched_id if {
	redact.result == {"sections": ["patient", null, null], "keep": [true, false, false]} with input as {
		"allowed_sections": ["alerts"],
		"patient_id": "res-1",
		"resources": [_patient, {"resourceType": "Patient", "id": "res-2"}, {"resourceType": "Patient"}],
	}
}

test_result_patient_header_needs_a_patient_id if {
	redact.result == {"sections": [null], "keep": [false]} with input as {
		"allowed_sections": ["alerts"],
		"resources": [_patient],
	}
	redact.result.keep == [false] with input as {"allowed_sections": ["alerts"], "patient_id": 1, "resources": [_patient]}
}

test_result_header_id_on_another_resource_type_is_not_the_header if {
	redact.result.sections == ["alerts"] with input as {
		"allowed_sections": ["alerts"],
		"patient_id": "res-1",
		"resources": [{"resourceType": "Flag", "id": "res-1"}],
	}
}

test_result_unclassified_withheld if {
	redact.result == {"sections": [null, null, null, null, null], "keep": [false, false, false, false, false]}
		with input as {
			"allowed_sections": config.access_levels.registered_manager,
			"patient_id": "res-1",
			"resources": [
				{"resourceType": "Organization", "id": "org1"},
				{"resourceType": "Practitioner", "id": "pr1"},
				{"resourceType": "Observation", "code": _cc(_loinc, "8867-4")},
				_doc(_loinc, "34133-9"),
				{"resourceType": "Immunization"},
			],
		}
}

test_result_social_services_encounter_hidden_from_admin if {
	encounter := {"resourceType": "Encounter", "serviceType": _cc(_sct, "310134006")}
	input_for := {"patient_id": "res-1", "resources": [encounter]}
	redact.result == {"sections": ["social_care"], "keep": [false]}
		with input as object.union(input_for, {"allowed_sections": config.access_levels.admin})
	redact.result == {"sections": ["social_care"], "keep": [true]}
		with input as object.union(input_for, {"allowed_sections": config.access_levels.senior_carer})
}

test_result_gp_condition_hidden_from_senior_carer if {
	condition := {
		"resourceType": "Condition",
		"code": _cc(_sct, "44054006"),
		"asserter": {"reference": "Organization/gp1"},
	}
	input_for := {"patient_id": "res-1", "resources": [condition, _gp_practice]}
	redact.result == {"sections": ["gp_records", null], "keep": [false, false]}
		with input as object.union(input_for, {"allowed_sections": config.access_levels.senior_carer})
	redact.result == {"sections": ["gp_records", null], "keep": [true, false]}
		with input as object.union(input_for, {"allowed_sections": config.access_levels.registered_manager})
}

test_result_condition_from_non_gp_organization_shown_to_senior_carer if {
	trust := {"resourceType": "Organization", "id": "gp1", "type": [_cc(_sct, "22232009")]}
	condition := {"resourceType": "Condition", "asserter": {"reference": "Organization/gp1"}}
	redact.result == {"sections": ["diagnoses", null], "keep": [true, false]} with input as {
		"allowed_sections": config.access_levels.senior_carer,
		"resources": [condition, trust],
	}
}

test_result_psy_observation_hidden_from_senior_carer if {
	observation := object.union(_observation("vital-signs"), {"meta": _psy})
	input_for := {"patient_id": "res-1", "resources": [observation]}
	redact.result == {"sections": ["mental_health"], "keep": [false]}
		with input as object.union(input_for, {"allowed_sections": config.access_levels.senior_carer})
	redact.result == {"sections": ["mental_health"], "keep": [true]}
		with input as object.union(input_for, {"allowed_sections": config.access_levels.registered_manager})
}

test_result_depressive_disorder_condition_is_mental_health if {
	redact.result == {"sections": ["mental_health"], "keep": [false]} with input as {
		"allowed_sections": config.access_levels.senior_carer,
		"resources": [{"resourceType": "Condition", "code": _cc(_sct, "35489007")}],
	}
}

test_result_meta_source_gp_prefix if {
	gp := {"resourceType": "Condition", "meta": _gp_meta}
	other := {"resourceType": "Condition", "meta": {"source": "https://trust.lcr.example/"}}
	redact.result == {"sections": ["gp_records", "diagnoses"], "keep": [false, true]} with input as {
		"allowed_sections": config.access_levels.senior_carer,
		"resources": [gp, other],
	}
}

test_result_every_matched_section_must_be_allowed if {
	redact.result == {"sections": ["endoscopy", "endoscopy"], "keep": [false, true]} with input as {
		"allowed_sections": ["endoscopy"],
		"resources": [
			{"resourceType": "Procedure", "code": _cc(_sct, "73761001")},
			{"resourceType": "DiagnosticReport", "code": _cc(_loinc, "27895-2")},
		],
	}
}

test_result_keeps_order_and_length if {
	resources := [
		{"resourceType": "Appointment"}, {"resourceType": "Location"}, {"resourceType": "Flag"},
		_patient, {"resourceType": "Encounter"},
	]
	redact.result == {
		"sections": ["appointments", null, "alerts", "patient", "visits_encounters"],
		"keep": [true, false, true, true, true],
	}
		with input as {"allowed_sections": config.access_levels.admin, "patient_id": "res-1", "resources": resources}
}

test_result_empty_or_malformed_input if {
	redact.result == {"sections": [], "keep": []} with input as {}
	redact.result == {"sections": [], "keep": []} with input as {"resources": {"resourceType": "Flag"}}
	redact.result == {"sections": ["alerts"], "keep": [false]} with input as {"resources": [{"resourceType": "Flag"}]}
	redact.result.keep == [false] with input as {"allowed_sections": [["alerts"]], "resources": [{"resourceType": "Flag"}]}
}

test_result_no_input if {
	redact.result == {"sections": [], "keep": []}
}

# One entry per resource, in order, at the size of a large record. (Repeated resources:
# OPA memoizes the per-resource calls, so this checks alignment, not speed.)
test_result_5000_resources_stay_aligned if {
	resources := [resource |
		some i in numbers.range(0, 4999)
		resource := _record[i % 28]
	]
	result := redact.result with input as {
		"allowed_sections": config.access_levels.senior_carer,
		"patient_id": "res-1",
		"resources": resources,
	}
	count(result.sections) == 5000
	count(result.keep) == 5000
	array.slice(result.sections, 4984, 5000) == array.slice(result.sections, 0, 16)
	result.sections[28] == null
	result.sections[29] == "patient"
	result.keep[29]
}

test_result_requested_section_shows_resource_whose_other_sections_are_permitted if {
	condition := {"resourceType": "Condition", "asserter": {"reference": "Organization/gp1"}}
	redact.result == {"sections": ["gp_records", null], "keep": [true, false]} with input as {
		"allowed_sections": ["gp_records"],
		"permitted_sections": config.access_levels.registered_manager,
		"resources": [condition, _gp_practice],
	}
}

test_result_requested_section_never_shows_an_unpermitted_section if {
	observation := object.union(_observation("vital-signs"), {"meta": _psy})
	redact.result == {"sections": ["mental_health", "vital_signs"], "keep": [false, true]} with input as {
		"allowed_sections": ["vital_signs"],
		"permitted_sections": config.access_levels.senior_carer,
		"resources": [observation, _observation("vital-signs")],
	}
}

test_result_resource_outside_requested_sections_withheld if {
	redact.result == {"sections": ["alerts", "vital_signs"], "keep": [true, false]} with input as {
		"allowed_sections": ["alerts"],
		"permitted_sections": config.access_levels.senior_carer,
		"resources": [{"resourceType": "Flag"}, _observation("vital-signs")],
	}
}
