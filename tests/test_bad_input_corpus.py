"""The corpus of bad inputs and newcomer habits (tests/corpus/bad_inputs.py, gathered in issue 21): every case
is handled.

Each case fails on the integration tree of the issue's date (hang, traceback, silently wrong or unclear
outcome) and passes here; ``python tests/corpus/bad_inputs.py --src <tree>`` prints the counts for any tree.
"""

import pytest

from corpus.bad_inputs import CASES


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_case_is_handled(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # some commands default to writing in the working folder
    CASES[name][1](tmp_path)
