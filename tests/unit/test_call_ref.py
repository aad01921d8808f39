"""The correlation value: made by syncd, read back only with the same secret."""

from syncd.domain.call_ref import make_ref, read_ref

SECRET = b"k" * 32


def test_a_ref_reads_back_to_its_lead() -> None:
    ref = make_ref(SECRET, "00Q5e00000AbCdEFGH", 42)
    assert read_ref(SECRET, ref) == ("00Q5e00000AbCdEFGH", 42)


def test_a_forged_or_altered_ref_matches_nothing() -> None:
    ref = make_ref(SECRET, "00Q5e00000AbCdEFGH", 42)
    other_lead = ref.replace(".42.", ".43.")
    assert read_ref(SECRET, other_lead) is None
    assert read_ref(b"x" * 32, ref) is None
    assert read_ref(SECRET, "00Q5e00000AbCdEFGH.42.0000000000000000") is None


def test_values_that_are_not_refs_are_ignored() -> None:
    for value in (None, 42, "", "abc", ["00Q5e00000AbCdEFGH.42.1f3a9c0b7d2e5a68"]):
        assert read_ref(SECRET, value) is None
