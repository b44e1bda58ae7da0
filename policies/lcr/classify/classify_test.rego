package lcr.classify_test

import data.lcr.classify

_sct := "http://snomed.info/sct"

_loinc := "http://loinc.org"

_act_code := "http://terminology.hl7.org/CodeSystem/v3-ActCode"

_obs_cat := "http://terminology.hl7.org/CodeSystem/observation-category"

_v2_0074 := "http://terminology.hl7.org/CodeSystem/v2-0074"

_icd10 := "http://hl7.org/fhir/sid/icd-10"

_ods_role := "https://digital.nhs.uk/services/organisation-data-service/CodeSystem/ODSOrganisationRole"

_org_role := "https://fhir.nhs.uk/CodeSystem/organisation-role"

_mh := {"diagnoses", "mental_health"}

_cc(system, code) := {"coding": [{"system": system, "code": code}]}

_doc(system, code) := {"resourceType": "DocumentReference", "type": _cc(system, code)}

_coded(resource_type, field, system, code) := {"resourceType": resource_type, field: _cc(system, code)}

_categorised(resource_type, system, code) := {"resourceType": resource_type, "category": [_cc(system, code)]}

_labelled(resource_type, system, code) := {
	"resourceType": resource_type,
	"meta": {"security": [{"system": system, "code": code}]},
}

_nodes(resource) := [node | walk(resource, [_, node]); is_object(node)]

_sections(resource) := classify.sections_of(resource, _nodes(resource), false)

# Names of the cases whose sections differ from the expected ones (empty when all pass).
_failures(cases) := {name |
	some name, case in cases
	not _sections(case[0]) == case[1]
}

test_sections_of_resource_types if {
	_failures({
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
		"unknown_type": [{"resourceType": "Immunization"}, set()],
		"no_type": [{"id": "x"}, set()],
		"numeric_type": [{"resourceType": 7}, set()],
	}) == set()
}

test_sections_of_every_medication_request_intent if {
	every intent in ["order", "original-order", "reflex-order", "filler-order", "instance-order"] {
		_sections({"resourceType": "MedicationRequest", "intent": intent}) == {"issued_medications"}
	}
	every intent in ["plan", "proposal", "directive", "option"] {
		_sections({"resourceType": "MedicationRequest", "intent": intent}) == {"medications"}
	}
	_sections({"resourceType": "MedicationRequest"}) == set()
	_sections({"resourceType": "MedicationRequest", "intent": "unknown"}) == set()
}

test_sections_of_diagnosis_needs_a_recognised_code if {
	_failures({
		"text_only": [{"resourceType": "Condition", "code": {"text": "something"}}, set()],
		"local_system": [_coded("Condition", "code", "https://local.example/codes", "X1"), set()],
		"no_code": [{"resourceType": "Condition"}, set()],
		"icd10": [_coded("Condition", "code", "http://hl7.org/fhir/sid/icd-10", "I10"), {"diagnoses"}],
		"procedure_text_only": [{"resourceType": "Procedure", "code": {"text": "op"}}, set()],
	}) == set()
}

test_sections_of_observation_and_report_categories if {
	_failures({
		"laboratory": [_categorised("Observation", _obs_cat, "laboratory"), {"lab_results"}],
		"social_history": [_categorised("Observation", _obs_cat, "social-history"), {"social_history"}],
		"vital_signs": [_categorised("Observation", _obs_cat, "vital-signs"), {"vital_signs"}],
		"stu3_system": [
			_categorised("Observation", "http://hl7.org/fhir/observation-category", "vital-signs"),
			{"vital_signs"},
		],
		"no_category": [{"resourceType": "Observation", "code": _cc(_loinc, "8867-4")}, set()],
		"unknown_category": [_categorised("Observation", _obs_cat, "survey"), set()],
		"wrong_system": [_categorised("Observation", _sct, "laboratory"), set()],
		"no_system": [{"resourceType": "Observation", "category": [{"coding": [{"code": "laboratory"}]}]}, set()],
		"lab_report": [_categorised("DiagnosticReport", _v2_0074, "LAB"), {"lab_results"}],
		"endoscopy_report": [_coded("DiagnosticReport", "code", _loinc, "27895-2"), {"endoscopy"}],
	}) == set()
}

test_sections_of_document_types if {
	_failures({
		"discharge_sct": [_doc(_sct, "373942005"), {"discharge_summaries"}],
		"discharge_loinc": [_doc(_loinc, "18842-5"), {"discharge_summaries"}],
		"letter": [_doc(_sct, "823751000000102"), {"letters"}],
		"maternity": [_doc(_loinc, "26442-4"), {"maternity"}],
		"care_plan": [_doc(_sct, "734163000"), {"care_plans"}],
		"progress_note": [_doc(_loinc, "11506-3"), {"progress_notes"}],
		"referral_letter": [_doc(_sct, "25611000000107"), {"referrals"}],
		"report": [_doc(_sct, "371525003"), {"clinical_document_reports"}],
		"correspondence": [_doc(_loinc, "11488-4"), {"clinical_correspondence"}],
		"endoscopy": [_doc(_loinc, "27895-2"), {"endoscopy"}],
		"crisis_plan": [_doc(_sct, "736253002"), {"mental_health"}],
		"unknown_type": [_doc(_loinc, "34133-9"), set()],
		"code_in_wrong_system": [_doc(_loinc, "373942005"), set()],
		"composition": [_coded("Composition", "type", _loinc, "18842-5"), {"discharge_summaries"}],
	}) == set()
}

test_sections_of_care_settings_in_every_place if {
	_failures({
		"encounter_service_type": [
			_coded("Encounter", "serviceType", _sct, "310134006"),
			{"visits_encounters", "social_care"},
		],
		"encounter_type": [
			{"resourceType": "Encounter", "type": [_cc(_sct, "310134006")]},
			{"visits_encounters", "social_care"},
		],
		"appointment_service_type": [
			{"resourceType": "Appointment", "serviceType": [_cc(_sct, "413294000")]},
			{"appointments", "community_information"},
		],
		"episode": [{"resourceType": "EpisodeOfCare", "type": [_cc(_sct, "310063007")]}, {"maternity"}],
		"composition_category": [
			{"resourceType": "Composition", "category": [_cc(_sct, "714088003")]},
			{"maternity"},
		],
		"practice_setting": [
			{"resourceType": "DocumentReference", "context": {"practiceSetting": _cc(_sct, "310134006")}},
			{"social_care"},
		],
	}) == set()
}

# Every spelling of SNOMED CT's system, and codes with spaces around them.
test_signals_in_every_system_spelling if {
	every system in [
		_sct, "https://snomed.info/sct", "http://snomed.info/sct/", " HTTP://SNOMED.INFO/SCT ",
		"urn:oid:2.16.840.1.113883.6.96",
	] {
		_sections(_coded("Condition", "code", system, " 58214004 ")) == {"diagnoses", "mental_health"}
		_sections(_coded("Encounter", "serviceType", system, "394587001")) == {"visits_encounters", "mental_health"}
	}
}

test_signals_anywhere_in_the_resource if {
	psychiatry := _cc(_sct, "394587001")
	_failures({
		"reason_code": [
			{"resourceType": "Encounter", "reasonCode": [_cc(_sct, "58214004")]},
			{"visits_encounters", "mental_health"},
		],
		"encounter_type": [{"resourceType": "Encounter", "type": [psychiatry]}, {"visits_encounters", "mental_health"}],
		"appointment_service_type": [
			{"resourceType": "Appointment", "serviceType": [psychiatry]},
			{"appointments", "mental_health"},
		],
		"extension": [
			{"resourceType": "Flag", "extension": [{"url": "https://x.example/ext", "valueCodeableConcept": psychiatry}]},
			{"alerts", "mental_health"},
		],
		"major_depression": [_coded("Condition", "code", _sct, "370143000"), {"diagnoses", "mental_health"}],
		"icd10_f20_9": [_coded("Condition", "code", _icd10, "F20.9"), _mh],
		"icd10_lower_case": [_coded("Condition", "code", _icd10, "f32"), _mh],
		"icd10_other_chapter": [_coded("Condition", "code", _icd10, "I10"), {"diagnoses"}],
		"endoscopy_on_appointment": [_coded("Appointment", "reasonCode", _sct, "73761001"), {"appointments", "endoscopy"}],
		"mental_health_code_in_unknown_system": [_coded("Flag", "code", "https://local.example", "58214004"), {"alerts"}],
	}) == set()
}

test_security_labels_in_every_spelling if {
	every system in [
		_act_code, "urn:oid:2.16.840.1.113883.5.4", "http://hl7.org/fhir/v3/ActCode",
		"https://terminology.hl7.org/CodeSystem/v3-ActCode/",
	] {
		every code in ["PSY", "psy", "MH", "BH", "PSYTHPN", "EMOTDIS", " Psy "] {
			_sections(_labelled("Flag", system, code)) == {"alerts", "mental_health"}
		}
	}
	_sections({"resourceType": "Flag", "meta": {"security": [{"code": "PSY"}]}}) == {"alerts", "mental_health"}
	_sections(object.union(_doc(_loinc, "11506-3"), {"securityLabel": [_cc(_act_code, "MH")]})) == {
		"progress_notes",
		"mental_health",
	}
}

test_unreadable_labels_and_modifier_extensions if {
	unreadable := [
		_labelled("Flag", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "V"),
		_labelled("Flag", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R"),
		_labelled("Flag", _act_code, "HIV"),
		_labelled("Flag", _act_code, "SEX"),
		_labelled("Flag", "https://local.example/labels", "PSY"),
		{"resourceType": "Flag", "meta": {"security": [{"system": _act_code}]}},
		{"resourceType": "Flag", "modifierExtension": [{"url": "https://x.example/not-really", "valueBoolean": true}]},
	]
	every resource in unreadable {
		classify.unreadable(resource, _nodes(resource))
	}
	readable := [
		_labelled("Flag", "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "N"),
		_labelled("Flag", "urn:oid:2.16.840.1.113883.5.25", "n"),
		_labelled("Flag", _act_code, "PSY"),
		{"resourceType": "Flag"},
	]
	every resource in readable {
		not classify.unreadable(resource, _nodes(resource))
	}
}

test_gp_sections_when_gp_sourced if {
	flag := {"resourceType": "Flag"}
	classify.sections_of(flag, _nodes(flag), true) == {"alerts", "gp_records"}
	doc := _doc(_loinc, "11506-3")
	classify.sections_of(doc, _nodes(doc), true) == {"progress_notes", "gp_records", "additional_gp_reports"}
	immunization := {"resourceType": "Immunization"}
	classify.sections_of(immunization, _nodes(immunization), true) == {"gp_records"}
}

test_gp_practice_in_both_ods_role_systems if {
	every coding in [
		{"system": _org_role, "code": "RO76"},
		{"system": _org_role, "code": "76"},
		{"system": _ods_role, "code": "RO76"},
		{"system": _ods_role, "code": "ro76"},
	] {
		classify.gp_practice({"resourceType": "Organization", "type": [{"coding": [coding]}]})
	}
	not classify.gp_practice({"resourceType": "Organization", "type": [_cc(_sct, "RO76")]})
	not classify.gp_practice({"resourceType": "Practitioner", "type": [_cc(_org_role, "RO76")]})
}

test_gp_meta_source_host_case_insensitive if {
	classify.gp_meta_source({"meta": {"source": "https://gp.lcr.example/Y99001"}})
	classify.gp_meta_source({"meta": {"source": "HTTPS://GP.LCR.Example/Y99001"}})
	not classify.gp_meta_source({"meta": {"source": "https://trust.lcr.example/"}})
	not classify.gp_meta_source({"meta": {"source": "x-https://gp.lcr.example/"}})
	not classify.gp_meta_source({"meta": {"source": ["https://gp.lcr.example/"]}})
}

test_taints_of_supporting_resources if {
	org := object.union(_labelled("Organization", _act_code, "PSY"), {"type": [_cc(_sct, "394587001")]})
	classify.taints(org, _nodes(org)) == {"mental_health"}
	classify.taints({"resourceType": "Practitioner"}, []) == set()
}

test_primary_precedence if {
	classify.primary({"diagnoses", "gp_records"}) == "gp_records"
	classify.primary({"visits_encounters", "social_care"}) == "social_care"
	classify.primary({"vital_signs", "mental_health"}) == "mental_health"
	classify.primary({"alerts"}) == "alerts"
	not classify.primary(set())
	classify.primary({"zz_new", "aa_new", "alerts"}) == "alerts"
	classify.primary({"zz_new", "aa_new"}) == "aa_new"
}

test_sections_of_reads_codes_from_data if {
	letter := _doc(_sct, "1234567")
	_sections(letter) == set()
	_sections(letter) == {"letters"} with data.lcr.classification.document_types as {"letters": {"sct": ["1234567"]}}
}
