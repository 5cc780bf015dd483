"""Name to ID resolution (org/resolve.py) and the catalogue cache (org/cache.py)."""

from __future__ import annotations

from pathlib import Path

from bulkschedule.org.cache import OrgCache
from bulkschedule.org.resolve import Entry, Index, normalise_name

TRAINERS = Index("trainer", [
    Entry("478346000008251001", "Asha Rao", "asha.rao@example.org", ("asha.rao@example.org",)),
    Entry("478346000008251002", "Ben  Okafor", "ben@example.org", ("ben@example.org",)),
    Entry("478346000008251003", "Asha Rao", "asha.r@example.org", ("asha.r@example.org",)),
])


def test_an_id_passes_through_and_a_unique_name_or_email_resolves() -> None:
    assert TRAINERS.resolve("478346000099999999").id == "478346000099999999"
    assert TRAINERS.resolve("  ben okafor ").id == "478346000008251002"
    assert TRAINERS.resolve("BEN@example.org").id == "478346000008251002"


def test_an_ambiguous_name_lists_every_candidate_with_what_tells_them_apart() -> None:
    found = TRAINERS.resolve("asha rao")
    assert found.id is None and found.code == "name.ambiguous"
    assert "478346000008251001" in found.message and "asha.r@example.org" in found.message
    assert "2 trainers" in found.message


def test_an_unknown_name_offers_close_names() -> None:
    found = TRAINERS.resolve("Ben Okafur")
    assert found.id is None and found.code == "name.unknown"
    assert '"Ben  Okafor"' in found.message and "org find" in found.message
    nothing = TRAINERS.resolve("Zebedee")
    assert nothing.code == "name.unknown" and "did you mean" not in nothing.message


def test_batches_are_pluralised_and_scoped_in_messages() -> None:
    batches = Index("batch", [Entry("1", "Spring", "13-01-2027 to 31-03-2027"),
                              Entry("2", "Spring", "14-04-2027 to 30-06-2027")],
                    where=' in course "Spanish"')
    found = batches.resolve("spring")
    assert found.code == "name.ambiguous" and '2 batches in course "Spanish"' in found.message


def test_normalise_name_folds_case_and_inner_spaces() -> None:
    assert normalise_name("  Spanish   A1\t") == "spanish a1"


def test_cache_keeps_each_list_with_its_fetch_time_and_honours_max_age(tmp_path: Path) -> None:
    now = [1000.0]
    with OrgCache(tmp_path, "https://people.zoho.eu", clock=lambda: now[0]) as cache:
        assert cache.get("courses") is None
        cache.put("courses", "", [{"id": "1", "name": "Spanish"}])
        now[0] = 1000.0 + 3600
        hit = cache.get("courses", max_age=7200)
        assert hit is not None and hit.items == [{"id": "1", "name": "Spanish"}]
        assert hit.fetched_at == 1000.0
        assert cache.get("courses", max_age=1800) is None  # too old to trust
        assert cache.get("courses") is not None  # org show still sees it
    with OrgCache(tmp_path, "http://127.0.0.1:9") as other:  # another API base: another org
        assert other.get("courses") is None and other.lists() == []
    with OrgCache(tmp_path, "https://people.zoho.eu") as again:  # survives reopening
        assert [c.kind for c in again.lists()] == ["courses"]
