package lcr.redact_test

import data.lcr.config
import data.lcr.redact

_sct := "http://snomed.info/sct"

_loinc := "http://loinc.org"

_act_code := "http://terminology.hl7.org/CodeSystem/v3-ActCode"

_base := "https://lcr.example/fhir"

_nhs := "https://fhir.nhs.uk/Id/nhs-number"

_ods := "https://fhir.nhs.uk/Id/ods-organization-code"

_confidentiality := "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"

_cc(system, code) := {"coding": [{"system": system, "code": code}]}

_me := {"reference": "Patient/res-1"}

_patient := {
	"resourceType": "Patient", "id": "res-1",
	"identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018"}],
}

_gp := {
	"resourceType": "Organization", "id": "gp1",
	"identifier": [{"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "Y99001"}],
	"type": [_cc("https://digital.nhs.uk/services/organisation-data-service/CodeSystem/ODSOrganisationRole", "RO76")],
}

_trust := {"resourceType": "Organization", "id": "trust1", "type": [_cc(_sct, "22232009")]}

_flag := {"resourceType": "Flag", "id": "f1", "subject": _me, "code": _cc(_sct, "129839007")}

_condition(code) := {
	"resourceType": "Condition", "id": concat("-", ["c", code]),
	"subject": _me, "code": _cc(_sct, code),
}

_observation(category) := {
	"resourceType": "Observation", "subject": _me,
	"category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category", category)],
}

_other := {"reference": "Patient/res-2"}

_psy := {"security": [{"system": _act_code, "code": "PSY"}]}

_input(level, resources) := {
	"allowed_sections": config.access_levels[level], # regal ignore:external-reference
	"permitted_sections": config.access_levels[level], # regal ignore:external-reference
	"patient": {"id": "res-1", "nhs_number": "9990000018"},
	"base_url": _base, # regal ignore:external-reference
	"resources": resources,
}

# Helpers that ask the policy: `with` belongs to the tests that call them.
_run(level, resources) := result if {
	result := redact.result with input as _input(level, resources) # regal ignore:with-outside-test-context
}

_with_urls(level, resources, urls) := result if {
	question := object.union(_input(level, resources), {"full_urls": urls})
	result := redact.result with input as question # regal ignore:with-outside-test-context
}

# -- the level x section matrix -----------------------------------------------------------

# One representative resource per section, each naming the resident.
_representatives := {
	"alerts": _flag,
	"appointments": {"resourceType": "Appointment", "participant": [{"actor": _me}]},
	"visits_encounters": {"resourceType": "Encounter", "subject": _me},
	"discharge_summaries": {"resourceType": "DocumentReference", "subject": _me, "type": _cc(_sct, "373942005")},
	"allergies": {"resourceType": "AllergyIntolerance", "patient": _me},
	"social_care": {"resourceType": "EpisodeOfCare", "patient": _me, "type": [_cc(_sct, "310134006")]},
	"diagnoses": _condition("44054006"),
	"family_history": {"resourceType": "FamilyMemberHistory", "patient": _me},
	"issued_medications": {"resourceType": "MedicationRequest", "subject": _me, "intent": "order"},
	"medications": {"resourceType": "MedicationStatement", "subject": _me},
	"lab_results": _observation("laboratory"),
	"letters": {"resourceType": "DocumentReference", "subject": _me, "type": _cc(_sct, "823751000000102")},
	"maternity": {"resourceType": "DocumentReference", "subject": _me, "type": _cc(_loinc, "26442-4")},
	"care_plans": {"resourceType": "CarePlan", "subject": _me},
	"procedures": {"resourceType": "Procedure", "subject": _me, "code": _cc(_sct, "80146002")},
	"progress_notes": {"resourceType": "DocumentReference", "subject": _me, "type": _cc(_loinc, "11506-3")},
	"referrals": {"resourceType": "ServiceRequest", "subject": _me},
	"social_history": _observation("social-history"),
	"vital_signs": _observation("vital-signs"),
	"gp_records": {"resourceType": "Immunization", "patient": _me, "meta": {"source": "https://gp.lcr.example/Y99001"}},
	"additional_gp_reports": {
		"resourceType": "DocumentReference", "subject": _me,
		"custodian": {"reference": "Organization/gp1"},
	},
	"clinical_document_reports": {"resourceType": "DocumentReference", "subject": _me, "type": _cc(_sct, "371525003")},
	"community_information": {"resourceType": "EpisodeOfCare", "patient": _me, "type": [_cc(_sct, "413294000")]},
	"clinical_correspondence": {"resourceType": "DocumentReference", "subject": _me, "type": _cc(_loinc, "11488-4")},
	"endoscopy": {"resourceType": "Procedure", "subject": _me, "code": _cc(_sct, "73761001")},
	"mental_health": _condition("35489007"),
}

_section_names := [section | some section, _ in _representatives]

_record := array.concat([_gp, _patient], [_representatives[section] | some section in _section_names])

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

test_matrix_every_level_sees_exactly_its_sections if {
	every level, allowed in config.access_levels {
		_mismatches(_run(level, _record), allowed) == set()
	}
}

test_matrix_sections_counted if {
	result := _run("registered_manager", _record)
	result.sections == array.concat(["supporting", "patient"], _section_names)
}

test_no_access_sees_nothing if {
	result := _run("no_access", _record)
	every kept in result.keep {
		not kept
	}
}

test_gp_organization_shown_only_with_what_references_it if {
	_run("registered_manager", _record).keep[0]
	not _run("senior_carer", _record).keep[0]
}

# -- 1. nested content --------------------------------------------------------------------

_encounter_containing(contained, ref_path) := object.union(
	{"resourceType": "Encounter", "id": "e1", "subject": _me, "contained": [contained]},
	ref_path,
)

test_contained_condition_removed_and_its_reference_masked if {
	schizophrenia := {"resourceType": "Condition", "id": "c1", "subject": _me, "code": _cc(_sct, "58214004")}
	diagnosis := [{"condition": {"reference": "#c1", "display": "Schizophrenia"}}]
	encounter := _encounter_containing(schizophrenia, {"diagnosis": diagnosis})
	result := _run("admin", [_patient, encounter])
	result.keep == [true, true]
	result.edits[1].mask == [["diagnosis", 0, "condition"]]
	["contained", 0] in result.edits[1].remove
	result.edits[1].parts == []
	rm := _run("registered_manager", [_patient, encounter])
	rm.edits[1] == {"remove": [], "mask": [], "parts": ["mental_health"]}
}

test_contained_psy_resource_in_a_flag_removed if {
	observation := {"resourceType": "Observation", "id": "o1", "meta": _psy, "status": "final"}
	extension := [{"url": "https://x.example/e", "valueReference": {"reference": "#o1"}}]
	flag := object.union(_flag, {"contained": [observation], "extension": extension})
	result := _run("admin", [_patient, flag])
	result.keep == [true, true]
	["contained", 0] in result.edits[1].remove
}

test_reason_code_and_display_make_the_container_mental_health if {
	encounter := {"resourceType": "Encounter", "subject": _me, "reasonCode": [_cc(_sct, "58214004")]}
	_run("admin", [_patient, encounter]).keep == [true, false]
	_run("registered_manager", [_patient, encounter]).keep == [true, true]
}

test_free_text_removed_below_registered_manager if {
	flag := object.union(_flag, {
		"text": {"status": "generated", "div": "<div>schizophrenia</div>"},
		"note": [{"text": "schizophrenia"}],
		"author": {"reference": "Practitioner/p1", "display": "Dr Psych"},
		"category": [{"text": "psychiatric"}],
		"extension": [{"url": "https://x.example/unknown", "valueString": "schizophrenia"}],
	})
	remove := {path | some path in _run("admin", [_patient, flag]).edits[1].remove}
	{["text"], ["note", 0, "text"], ["author", "display"], ["category", 0, "text"], ["extension", 0]} - remove == set()
	_run("registered_manager", [_patient, flag]).edits[1].remove == []
}

test_free_text_kept_for_recognised_codes_names_and_dosage if {
	code := {"coding": [{"system": _sct, "code": "129839007", "display": "At risk for falls"}], "text": "Falls"}
	flag := object.union(_flag, {"code": code})
	_run("admin", [_patient, flag]).edits[1].remove == [["code", "text"]] # the display of the code stays
	request := {
		"resourceType": "MedicationRequest", "subject": _me, "intent": "order",
		"dosageInstruction": [{"text": "one tablet daily"}],
	}
	_run("senior_carer", [_patient, request]).edits[1].remove == []
	patient := object.union(_patient, {"name": [{"text": "Margaret Thompson"}]})
	_run("admin", [patient]).edits[0].remove == []
}

test_composition_section_text_and_entry_display_removed if {
	composition := {
		"resourceType": "Composition", "subject": _me, "type": _cc(_sct, "373942005"),
		"section": [{
			"text": {"status": "additional", "div": "<div>psychosis</div>"},
			"entry": [{"reference": "Condition/c-58214004", "display": "Schizophrenia"}],
		}],
	}
	result := _run("senior_carer", [_patient, composition, _condition("58214004")])
	result.keep == [true, true, false]
	{["section", 0, "text"], ["section", 0, "entry", 0, "display"]} - {path | some path in result.edits[1].remove} == set()
	result.edits[1].mask == [["section", 0, "entry", 0]]
}

test_reference_to_a_withheld_resource_masked if {
	diagnosis := [{"condition": {"reference": "Condition/c-58214004"}}]
	encounter := {"resourceType": "Encounter", "subject": _me, "diagnosis": diagnosis}
	result := _run("senior_carer", [_patient, encounter, _condition("58214004")])
	result.keep == [true, true, false]
	result.edits[1].mask == [["diagnosis", 0, "condition"]]
}

test_unresolvable_reference_masked if {
	flag := object.union(_flag, {"author": {"reference": "Practitioner/not-here"}})
	_run("admin", [_patient, flag]).edits[1].mask == [["author"]]
}

test_unknown_modifier_extension_withholds_from_everyone if {
	flag := object.union(_flag, {"modifierExtension": [{"url": "https://x.example/negation", "valueBoolean": true}]})
	_run("registered_manager", [_patient, flag]).keep == [true, false]
}

# -- 2. every spelling of a sensitive signal ----------------------------------------------

test_labels_in_other_spellings_withhold_from_admin if {
	every label in [
		{"system": "urn:oid:2.16.840.1.113883.5.4", "code": "PSY"},
		{"system": "http://hl7.org/fhir/v3/ActCode", "code": "PSY"},
		{"code": "PSY"},
		{"system": _act_code, "code": "psy"},
		{"system": _confidentiality, "code": "V"},
	] {
		flag := object.union(_flag, {"meta": {"security": [label]}})
		_run("admin", [_patient, flag]).keep == [true, false]
	}
}

test_confidentiality_v_withheld_even_from_registered_manager if {
	flag := object.union(_flag, {"meta": {"security": [{"system": _confidentiality, "code": "V"}]}})
	_run("registered_manager", [_patient, flag]).keep == [true, false]
}

test_psychiatry_in_other_places_withheld_from_admin if {
	psychiatry := _cc("urn:oid:2.16.840.1.113883.6.96", "394587001")
	every resource in [
		{"resourceType": "Encounter", "subject": _me, "serviceType": psychiatry},
		{"resourceType": "Encounter", "subject": _me, "type": [_cc("https://snomed.info/sct/", "394587001")]},
		{"resourceType": "Appointment", "participant": [{"actor": _me}], "serviceType": [psychiatry]},
	] {
		_run("admin", [_patient, resource]).keep == [true, false]
	}
}

test_icd10_and_snomed_descendants_withheld_from_senior_carer if {
	icd := {"resourceType": "Condition", "subject": _me, "code": _cc("http://hl7.org/fhir/sid/icd-10", "F20.9")}
	_run("senior_carer", [_patient, icd, _condition("370143000")]).keep == [true, false, false]
}

# -- 3. GP sources through every reference form --------------------------------------------

_gp_condition(extra) := object.union(_condition("44054006"), extra)

test_gp_sourced_through_every_reference_form if {
	role := {"resourceType": "PractitionerRole", "id": "pr1", "organization": {"reference": "Organization/gp1"}}
	contained_gp := object.union(_gp, {"id": "gp"})
	cases := [
		[_gp_condition({"asserter": {"reference": "Organization/gp1"}}), [_gp]],
		[_gp_condition({"asserter": {"reference": "https://lcr.example/fhir/Organization/gp1"}}), [_gp]],
		[_gp_condition({"asserter": {"reference": "Organization/gp1/_history/2"}}), [_gp]],
		[_gp_condition({"asserter": {"reference": "urn:uuid:1b2c"}}), [_gp]],
		[_gp_condition({"asserter": {"identifier": {"system": _ods, "value": "Y99001"}}}), [_gp]],
		[_gp_condition({"asserter": {"reference": "PractitionerRole/pr1"}}), [_gp, role]],
		[_gp_condition({"asserter": {"reference": "#gp"}, "contained": [contained_gp]}), []],
		[_gp_condition({"asserter": {"reference": "Organization/unknown"}}), []],
		[_gp_condition({"meta": {"source": "HTTPS://GP.LCR.EXAMPLE/Y99001"}}), []],
		[
			{"resourceType": "MedicationStatement", "subject": _me, "informationSource": {"reference": "Organization/gp1"}},
			[_gp],
		],
		[{"resourceType": "Encounter", "subject": _me, "serviceProvider": {"reference": "Organization/gp1"}}, [_gp]],
	]
	every case in cases {
		resources := array.concat([_patient, case[0]], case[1])
		urls := array.concat([null, null, "urn:uuid:1b2c"], [null | some _ in array.slice(case[1], 1, 9)])
		not _with_urls("senior_carer", resources, urls).keep[1]
		_with_urls("registered_manager", resources, urls).keep[1]
	}
}

test_non_gp_source_shown_to_senior_carer if {
	condition := _gp_condition({"asserter": {"reference": "Organization/trust1"}})
	_run("senior_carer", [_patient, condition, _trust]).keep == [true, true, true]
}

# -- 4. only this resident ------------------------------------------------------------------

test_other_persons_data_withheld_from_everyone if {
	other := {"resourceType": "Patient", "id": "res-2"}
	every resource in [
		object.union(_flag, {"subject": {"reference": "Patient/res-2"}}),
		object.union(_flag, {"subject": {"reference": "https://elsewhere.example/fhir/Patient/res-1"}}),
		object.union(_flag, {"subject": {"reference": "urn:uuid:other"}}),
		object.union(_flag, {"subject": {"identifier": {"system": _nhs, "value": "9990000026"}}}),
		object.union(_flag, {"subject": object.union(_me, {"identifier": {"system": _nhs, "value": "9990000026"}})}),
		object.union(_flag, {"subject": {"reference": "Group/g1"}}),
		object.union(_flag, {"subject": _me, "extension": [{"url": "https://x.example/e", "valueReference": _other}]}),
		{"resourceType": "Flag", "code": _cc(_sct, "129839007")},
	] {
		result := _with_urls("registered_manager", [_patient, other, resource], [null, "urn:uuid:other", null])
		result.keep == [true, false, false]
	}
}

test_resident_named_in_every_form if {
	every subject in [
		{"reference": "Patient/res-1"},
		{"reference": "https://lcr.example/fhir/Patient/res-1"},
		{"reference": "HTTPS://LCR.EXAMPLE/fhir/Patient/res-1/_history/1"},
		{"reference": "urn:uuid:me"},
		{"identifier": {"system": _nhs, "value": "9990000018"}},
	] {
		flag := object.union(_flag, {"subject": subject})
		_with_urls("admin", [_patient, flag], ["urn:uuid:me", null]).keep == [true, true]
	}
}

test_header_patient_classified_like_any_resource if {
	labelled := object.union(_patient, {"meta": _psy})
	_run("admin", [labelled, _flag]).keep == [false, true]
	_run("registered_manager", [labelled, _flag]).keep == [true, true]
	holding := object.union(_patient, {"contained": [_condition("58214004")]})
	result := _run("admin", [holding])
	result.keep == [true]
	result.edits[0].remove == [["contained", 0]]
}

test_header_link_to_another_patient_masked if {
	linked := object.union(_patient, {"link": [{"other": {"reference": "Patient/res-2"}, "type": "seealso"}]})
	result := _run("registered_manager", [linked, {"resourceType": "Patient", "id": "res-2"}])
	result.keep == [true, false]
	result.edits[0].mask == [["link", 0, "other"]]
}

test_header_needs_an_allowed_section_and_the_matched_id if {
	_run("no_access", [_patient]).keep == [false]
	redact.result.keep == [false] with input as {"allowed_sections": ["alerts"], "resources": [_patient]}
}

# -- robustness ---------------------------------------------------------------------------

test_empty_or_malformed_input if {
	redact.result == {"sections": [], "keep": [], "edits": []} with input as {}
	redact.result == {"sections": [], "keep": [], "edits": []} with input as {"resources": {"resourceType": "Flag"}}
	redact.result == {"sections": [], "keep": [], "edits": []} with input as {"resources": [_flag, "not a resource"]}
	redact.result.keep == [false] with input as {"allowed_sections": [["alerts"]], "resources": [_flag]}
}

test_unclassified_withheld if {
	observation := {"resourceType": "Observation", "subject": _me}
	result := _run("registered_manager", [_patient, observation, {"resourceType": "Basic"}])
	result.keep == [true, false, false]
	result.sections == ["patient", null, null]
}

test_requested_sections_never_show_an_unpermitted_one if {
	observation := object.union(_observation("vital-signs"), {"meta": _psy})
	question := _input("senior_carer", [_patient, observation, _observation("vital-signs")])
	result := redact.result with input as object.union(question, {"allowed_sections": ["vital_signs"]})
	result.keep == [true, false, true]
}

test_1000_resources_stay_aligned if {
	resources := array.concat([_patient], [_flag | some _ in numbers.range(1, 999)])
	result := _run("admin", resources)
	count(result.keep) == 1000
	every kept in result.keep {
		kept
	}
}

# -- found trying to make it leak ------------------------------------------------------------

test_shapes_r4_forbids_withhold if {
	condition := _condition("58214004")
	every resource in [
		object.union(_flag, {"contained": condition}),
		object.union(_flag, {"contained": "text"}),
		object.union(_flag, {"meta": [{"security": [{"code": "PSY"}]}]}),
		object.union(_flag, {"meta": {"security": {"code": "PSY"}}}),
		object.union(_flag, {"meta": {"security": "PSY"}}),
	] {
		result := _run("admin", [_patient, resource])
		not result.keep[1]
		result.edits[1] == {"remove": [], "mask": [], "parts": []}
	}
	nested := object.union(_flag, {"contained": [object.union(condition, {"contained": [condition]})]})
	_run("registered_manager", [_patient, nested]).edits[1].remove == [["contained", 0]]
}

test_contained_part_outside_the_compartment_removed if {
	every subject in [{"reference": "Group/g1"}, null] {
		part := object.union(_condition("44054006"), {"id": "c1", "subject": subject})
		encounter := {"resourceType": "Encounter", "subject": _me, "contained": [part]}
		["contained", 0] in _run("registered_manager", [_patient, encounter]).edits[1].remove
	}
}

test_another_patient_never_leaves_even_gp_sourced if {
	other := {
		"resourceType": "Patient", "id": "res-2", "meta": {"source": "https://gp.lcr.example/Y99001"},
		"link": [{"other": _me, "type": "seealso"}],
	}
	_run("registered_manager", [_patient, other]).keep == [true, false]
}

test_unstructured_strings_removed_below_registered_manager if {
	appointment := {
		"resourceType": "Appointment", "participant": [{"actor": _me}], "status": "booked",
		"description": "memory clinic", "patientInstruction": "bring letters", "start": "2026-01-01T10:00:00Z",
		"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueString": "x"}],
	}
	remove := {path | some path in _run("admin", [_patient, appointment]).edits[1].remove}
	remove == {["description"], ["patientInstruction"], ["extension", 0, "valueString"]}
}

test_unrecognised_codings_removed_whole if {
	flag := object.union(_flag, {"category": [{"coding": [
		{"system": "https://local.example/codes", "code": "SCHIZ"},
		{"system": _sct, "code": "58214004 |Schizophrenia|"},
		{"system": _sct, "code": "0", "display": "Schizophrenia"},
	]}]})
	remove := {path | some path in _run("admin", [_patient, flag]).edits[1].remove}
	{["category", 0, "coding", 0], ["category", 0, "coding", 1], ["category", 0, "coding", 2]} - remove == set()
}

test_icd10_dementias_and_psychiatric_supporting_resources if {
	alzheimers := {"resourceType": "Condition", "subject": _me, "code": _cc("http://hl7.org/fhir/sid/icd-10", "G30.9")}
	_run("senior_carer", [_patient, alzheimers]).keep == [true, false]
	psychiatrist := {"resourceType": "Practitioner", "id": "p1", "qualification": [{"code": _cc(_sct, "80584001")}]}
	flag := object.union(_flag, {"author": {"reference": "Practitioner/p1"}})
	result := _run("admin", [_patient, flag, psychiatrist])
	result.keep == [true, true, false]
	result.edits[1].mask == [["author"]]
}
