import random

from builders.split import SplitSpec, assign_splits, group_key


def _rows(n, seed=0):
    rng = random.Random(seed)
    return [(f"{i:016d}", f"Artist {rng.randrange(n // 3)}", f"Song {i}") for i in range(n)]


def test_ratio_split_is_stable_when_a_clip_is_added_or_removed():
    rows = _rows(300)
    spec = SplitSpec(test_ratio=0.2, min_test=0)
    full = assign_splits(rows, spec)
    for drop in (0, 17, 150):
        fewer = assign_splits(rows[:drop] + rows[drop + 1 :], spec)
        assert all(fewer[k] == full[k] for k in fewer)
    more = assign_splits(rows + [("X" * 16, "New", "Song")], spec)
    assert all(more[k] == full[k] for k in full)
    assert 30 < sum(v == "test" for v in full.values()) < 90


def test_min_test_tops_up_and_removing_a_train_clip_keeps_the_rest():
    rows = _rows(16)
    spec = SplitSpec(min_test=4)  # paper ratio gives < 1 test clip on 16
    full = assign_splits(rows, spec)
    assert sum(v == "test" for v in full.values()) >= 4
    train_id = next(k for k, v in full.items() if v == "train")
    fewer = assign_splits([r for r in rows if r[0] != train_id], spec)
    assert all(fewer[k] == full[k] for k in fewer)


def test_duplicates_stay_together():
    rows = [("a" * 16, "The Band feat. X", "Hello (Remastered 2011)"), ("b" * 16, "the band", "Hello"),
            ("c" * 16, "THE BAND", "hello - Live")] + _rows(200)
    for salt in ("s1", "s2", "s3", "s4", "s5"):
        s = assign_splits(rows, SplitSpec(test_ratio=0.5, salt=salt))
        assert s["a" * 16] == s["b" * 16] == s["c" * 16]
    assert group_key("Beyoncé", "Halo") == group_key("beyonce", "HALO!")


def test_artist_split_has_no_overlap():
    rows = _rows(400, seed=3)
    s = assign_splits(rows, SplitSpec(test_ratio=0.3, by="artist"))
    train = {a for cid, a, _ in rows if s[cid] == "train"}
    test = {a for cid, a, _ in rows if s[cid] == "test"}
    assert test and not (train & test)


def test_test_size():
    s = assign_splits(_rows(1000), SplitSpec(test_size=100, min_test=0))
    assert 60 < sum(v == "test" for v in s.values()) < 140
