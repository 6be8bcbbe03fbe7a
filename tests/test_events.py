import json

import numpy as np
import pytest

from graph.errors import InputError
from graph.events import read_events
from graph.schema import KINDS

CSV = """event,user,target,ts,weight,text
user,1,,,,
follow,1,2,100,,
tweet,2,50,90,,hello world
like,1,50,120,,
retweet,1,50,121,,
like,1,50,130,,
"""


def test_csv_tsv_jsonl_agree(tmp_path):
    (tmp_path / "e.csv").write_text(CSV)
    (tmp_path / "e.tsv").write_text(CSV.replace(",", "\t"))
    with (tmp_path / "e.jsonl").open("w") as fh:
        lines = CSV.strip().splitlines()
        header = lines[0].split(",")
        for line in lines[1:]:
            row = {k: v for k, v in zip(header, line.split(",")) if v}
            for k in ("user", "target", "ts"):
                if k in row:
                    row[k] = int(row[k])
            fh.write(json.dumps(row) + "\n")
    parsed = [read_events(tmp_path / f).arrays() for f in ("e.csv", "e.tsv", "e.jsonl")]
    for other in parsed[1:]:
        for key in parsed[0]:
            assert np.array_equal(parsed[0][key], other[key]), key
    a = parsed[0]
    assert a["users"].tolist() == [1]
    assert a["follow_src"].tolist() == [1] and a["follow_dst"].tolist() == [2]
    assert a["tweet_ids"].tolist() == [50] and a["tweet_authors"].tolist() == [2]
    assert a["eng_kind"].tolist() == [KINDS["like"], KINDS["retweet"], KINDS["like"]]
    assert a["eng_weight"].tolist() == [1.0, 2.0, 1.0]  # default kind weights


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("event,user,target\nfollow,1,2\nfollow,1\n")
    with pytest.raises(InputError, match=r"e.csv:3: expected 3 fields"):
        read_events(p)


def test_skip_bad_counts_and_reports(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("event,user,target\nfollow,1,2\nfollow,1\nlike,x,5\nshout,1,2\nfollow,3,4\n")
    with pytest.raises(InputError, match=r"e.csv:3"):
        read_events(p)
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 3 and ev.rows == 5
    assert ev.follow_src == [1, 3]
    assert "e.csv:3" in ev.skipped_examples[0] and "e.csv:4" in ev.skipped_examples[1]


def test_unknown_column(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("event,user,target,colour\nfollow,1,2,red\n")
    with pytest.raises(InputError, match=r"e.csv:1: unknown column\(s\) \['colour'\]"):
        read_events(p)
    j = tmp_path / "e.jsonl"
    j.write_text('{"event": "follow", "user": 1, "target": 2, "colour": 1}\n')
    with pytest.raises(InputError, match=r"e.jsonl:1: unknown key"):
        read_events(j)


@pytest.mark.parametrize(
    "row,message",
    [
        ({"event": "follow", "user": "abc", "target": 2}, "user id must be a non-negative integer"),
        ({"event": "follow", "user": 1.5, "target": 2}, "user id must be an integer"),
        ({"event": "like", "user": 1, "target": [3]}, "target id must be an integer"),
        ({"event": "follow", "user": 1, "target": 2**63}, "outside"),
        ({"event": "like", "user": 1, "target": 2, "weight": "heavy"}, "weight must be a number"),
        ({"event": "follow", "user": 1, "target": 1}, "cannot follow themselves"),
    ],
)
def test_wrong_types(tmp_path, row, message):
    p = tmp_path / "e.jsonl"
    p.write_text('{"event": "user", "user": 7}\n' + json.dumps(row) + "\n")
    with pytest.raises(InputError, match=rf"e.jsonl:2: .*{message}"):
        read_events(p)


def test_invalid_json(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"event": "user", "user": 7}\n{oops\n')
    with pytest.raises(InputError, match=r"e.jsonl:2: invalid JSON"):
        read_events(p)
