"""Files come back (ci_magic/engine/delivery.py) from a real sandbox: the rules users can trust."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fenced

from ci_magic.core.settings import Settings
from ci_magic.engine.interpreter import Interpreter
from ci_magic.providers.fake import FakeModelServer


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").write_text("a,b\n1,2\n")
    (work / "q2.csv").write_text("the user's own q2\n")
    return work


@pytest.fixture
def it(settings: Settings, folder: Path) -> Iterator[Interpreter]:
    with Interpreter(settings, user_dir=folder, files_dir=folder) as interp:
        yield interp


def ask(fake: FakeModelServer, it: Interpreter, code: str) -> list[tuple[str, str | None, str | None]]:
    fake.add(fenced(code))
    result = it.ask("write the files")
    assert result.ok, result.attempts[-1].failure
    return [(f.path, f.saved_as, f.note) for f in result.files]


def test_new_files_arrive_under_their_names_with_size_and_hash(
    fake: FakeModelServer, it: Interpreter, folder: Path
) -> None:
    got = ask(
        fake,
        it,
        "import pandas as pd, os\nos.makedirs('out', exist_ok=True)\n"
        "pd.read_csv('data.csv').to_csv('out/summary.csv', index=False)\n"
        "open('rapport été 2024.txt', 'w').write('ok')",
    )
    assert sorted(got) == [
        ("out/summary.csv", "out/summary.csv", None),
        ("rapport été 2024.txt", "rapport été 2024.txt", None),
    ]
    assert (folder / "out" / "summary.csv").read_text() == "a,b\n1,2\n"
    assert (folder / "rapport été 2024.txt").read_text() == "ok"
    fake.add(fenced("open('again.txt', 'w').write('x')"))
    (delivered,) = it.ask("again").files
    assert delivered.bytes == 1 and delivered.sha256 == hashlib.sha256(b"x").hexdigest()


def test_an_existing_file_is_never_overwritten_unless_asked(
    fake: FakeModelServer, it: Interpreter, folder: Path, settings: Settings
) -> None:
    # The user's own files are read-only inside; a file the code made and that came back already is not.
    assert ask(fake, it, "open('report.csv', 'w').write('first')")[0][1] == "report.csv"
    assert ask(fake, it, "open('report.csv', 'w').write('second')")[0][1] == "report (2).csv"
    assert (folder / "report.csv").read_text() == "first"
    it.reconfigure(settings.with_(overwrite_files=True))
    assert ask(fake, it, "open('report.csv', 'w').write('third')")[0][1] == "report.csv"
    assert (folder / "report.csv").read_text() == "third"


def test_files_added_to_the_folder_become_visible(
    fake: FakeModelServer, it: Interpreter, folder: Path
) -> None:
    ask(fake, it, "x = 1")
    (folder / "later.csv").write_text("a\n5\n")
    fake.add(fenced("import pandas as pd\nprint(pd.read_csv('later.csv').a.sum())"))
    result = it.ask("sum of later.csv")
    assert result.ok and result.outputs[0]["text"] == "5\n"
    assert "restarted" in fake.requests[-1]["messages"][-1]["content"]  # the model knows x is gone


def test_the_users_files_cannot_be_replaced_from_inside(
    fake: FakeModelServer, it: Interpreter, folder: Path
) -> None:
    got = ask(
        fake,
        it,
        "import os\nfor attempt in (lambda: os.remove('data.csv'), lambda: os.rename('data.csv', 'x.csv')):\n"
        "    try:\n        attempt()\n    except OSError:\n        pass\n"
        "try:\n    open('data.csv', 'w').write('replaced')\nexcept OSError:\n    pass",
    )
    assert got == [] and (folder / "data.csv").read_text() == "a,b\n1,2\n"


def test_links_and_special_files_are_never_followed(
    fake: FakeModelServer, it: Interpreter, folder: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    got = ask(
        fake,
        it,
        f"import os\nos.symlink({str(secret)!r}, 'leak.txt')\nos.symlink('/etc/hostname', 'host.txt')\n"
        "os.mkfifo('trap')\nopen('mine.txt', 'w').write('mine')\nos.link('mine.txt', 'second name.txt')",
    )
    paths = {p for p, _, _ in got}
    assert "leak.txt" not in paths and "host.txt" not in paths and "trap" not in paths
    assert not (folder / "leak.txt").exists() and not (folder / "host.txt").exists()
    # A file with two names in the sandbox is refused (without isolation it could be one of yours).
    assert all(note and "hard link" in note for p, saved, note in got if saved is None)


def test_a_link_in_the_users_folder_does_not_redirect_a_copy(
    fake: FakeModelServer, it: Interpreter, folder: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (folder / "reports").symlink_to(elsewhere)  # the user's own link
    got = ask(
        fake, it, "import os\nos.makedirs('reports2', exist_ok=True)\nopen('reports2/r.txt', 'w').write('r')"
    )
    assert got == [("reports2/r.txt", "reports2/r.txt", None)]
    fake.add(
        fenced(
            "import os, shutil\nos.makedirs('x/reports', exist_ok=True)\nopen('x/reports/r.txt', 'w').write('r')"
        )
    )
    it.ask("again")
    assert list(elsewhere.iterdir()) == []


def test_the_size_cap_names_what_was_not_copied(
    fake: FakeModelServer, settings: Settings, folder: Path
) -> None:
    with Interpreter(settings.with_(max_files_mb=1), user_dir=folder, files_dir=folder) as it:
        got = ask(
            fake, it, "open('big.bin', 'wb').write(b'x' * 2_000_000)\nopen('small.txt', 'w').write('s')"
        )
    big = next(g for g in got if g[0] == "big.bin")
    assert big[1] is None and big[2] and "limit" in big[2]
    assert not (folder / "big.bin").exists() and (folder / "small.txt").exists()


def test_many_small_files_are_bounded(fake: FakeModelServer, it: Interpreter, folder: Path) -> None:
    got = ask(
        fake,
        it,
        "import os\nos.makedirs('many')\nfor i in range(10_000):\n    open(f'many/f{i}.txt', 'w').write('x')",
    )
    assert len(got) <= 201 and got[-1][2] and "more files not copied" in got[-1][2]


def test_a_failed_attempts_files_do_not_come_back(
    fake: FakeModelServer, it: Interpreter, folder: Path
) -> None:
    fake.add(
        fenced("open('half.csv', 'w').write('x')\nraise RuntimeError('oops')"),
        # A whole new program (not the one statement asked for: engine/linefix.py would splice that in).
        fenced(
            "# start again\nimport os\nname = 'done.csv'\nwith open(name, 'w') as f:\n    f.write('y')\nprint(name)"
        ),
    )
    result = it.ask("write")
    assert [f.path for f in result.files] == ["done.csv"] and not (folder / "half.csv").exists()


def test_the_cli_converts_an_excel_sheet_next_to_the_workbook(fake: FakeModelServer, tmp_path: Path) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    book.active.title = "Q1"
    book.active.append(["region", "units"])
    book.active.append(["north", 3])
    q2 = book.create_sheet("Q2")
    q2.append(["region", "units"])
    q2.append(["south", 7])
    book.save(tmp_path / "sales.xlsx")
    fake.add(
        fenced(
            "import pandas as pd\npd.read_excel('sales.xlsx', sheet_name='Q2').to_csv('q2.csv', index=False)"
        )
    )
    env = {
        **os.environ,
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "k",
        "CI_MAGIC_MODEL": "fake-model",
        "CI_MAGIC_ANSWER_IN_WORDS": "0",  # the script holds the code reply only
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ci_magic.cli",
            "ask",
            "--json",
            "Convert the Q2 sheet of sales.xlsx to q2.csv",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "q2.csv").read_text().splitlines() == ["region,units", "south,7"]
    doc = json.loads(proc.stdout)
    assert doc["files"][0]["saved_as"] == "q2.csv" and len(doc["files"][0]["sha256"]) == 64
    # The model saw the workbook's sheets without being told.
    sent = fake.requests[0]["messages"][-1]["content"]
    assert "sales.xlsx" in sent and "'Q2'" in sent


def test_files_that_would_run_where_they_land_arrive_inert(
    fake: FakeModelServer, it: Interpreter, folder: Path
) -> None:
    # The notebook's folder is first on the user kernel's sys.path, and tools load some names from it: a
    # ci_magic.py written in the sandbox would be what the next `%load_ext ci_magic` imports, on the host.
    names = [
        "ci_magic.py",
        "pandas.PY",
        "conftest.py",
        "sitecustomize.py",
        "pkg/__init__.py",
        "lib/_speedups.cpython-311-x86_64-linux-gnu.so",
        "libfoo.so.1",
        "evil.pth",
        "pyproject.toml",
        "Makefile",
        "jupyter_server_config.json",
        "ipython_config.py",
    ]
    code = "import os\n" + "".join(
        f"os.makedirs(os.path.dirname({n!r}) or '.', exist_ok=True); open({n!r}, 'w').write('print(1)')\n"
        for n in names
    )
    got = {
        path: (saved, note)
        for path, saved, note in ask(fake, it, code + "open('report.csv', 'w').write('a\\n')")
    }
    assert got.pop("report.csv") == ("report.csv", None)  # data arrives as it is
    for name in names:
        saved, note = got[name]
        assert saved == name + ".txt" and note and "rename it to use it" in note, (name, saved, note)
        assert not (folder / name).exists() and (folder / saved).read_text() == "print(1)"
    sys_path_first = subprocess.run(
        [sys.executable, "-c", "import ci_magic; print(ci_magic.__file__)"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert sys_path_first.returncode == 0 and str(folder) not in sys_path_first.stdout  # the real package


def test_a_look_alike_of_a_users_file_arrives_with_a_note(
    fake: FakeModelServer, it: Interpreter, folder: Path
) -> None:
    (folder / "caf\u00e9.csv").write_text("the user's own\n")  # composed é
    got = {
        path: (saved, note)
        for path, saved, note in ask(
            fake,
            it,
            "open('d\u0430ta.csv', 'w').write('a,b\\n6,6\\n')\n"  # Cyrillic а
            "open('cafe\u0301.csv', 'w').write('x\\n')",  # decomposed é
        )
    }
    for path, twin in (("d\u0430ta.csv", "data.csv"), ("cafe\u0301.csv", "caf\u00e9.csv")):
        saved, note = got[path]
        assert saved == path and note is not None and f"looks like {twin!r}" in note, (path, note)
    assert (folder / "data.csv").read_text() == "a,b\n1,2\n"


def test_a_file_asked_for_is_read_back_from_the_sandbox_and_checked(
    fake: FakeModelServer, it: Interpreter, folder: Path
) -> None:
    (folder / "two.csv").write_text("a,b\n1,2\n3,4\n")
    to_json = "import pandas as pd\npd.read_csv('two.csv').to_json('out.json', orient='records'{})"
    fake.add(fenced(to_json.format(", lines=True")), fenced(to_json.format("")))
    result = it.ask("Convert two.csv to out.json", attempts=2)
    assert [a.outcome for a in result.attempts] == ["rejected", "ok"]
    repair = str(fake.requests[1]["messages"][-1]["content"])
    assert "out.json is not valid JSON" in repair and "Remove lines=True" in repair
    assert result.ok and json.loads((folder / "out.json").read_text()) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


def test_a_zip_bomb_written_as_the_asked_for_workbook_is_checked_within_bounds(
    fake: FakeModelServer, it: Interpreter, folder: Path
) -> None:
    # The answer check reads a file the question asks for back into the parent and looks at its header: a
    # workbook that inflates to 1 GiB from ~1 MB must be judged from its declared sizes, never inflated.
    bomb = (
        "import os, zipfile\n"
        "import pandas as pd\n"
        "pd.DataFrame({'region': ['a'], 'revenue': [1]}).to_excel('base.xlsx', index=False)\n"
        "with zipfile.ZipFile('base.xlsx') as src, zipfile.ZipFile('report.xlsx', 'w', zipfile.ZIP_DEFLATED) as z:\n"
        "    for item in src.infolist():\n"
        "        if item.filename != 'xl/worksheets/sheet1.xml':\n"
        "            z.writestr(item, src.read(item.filename))\n"
        "    with z.open('xl/worksheets/sheet1.xml', 'w', force_zip64=True) as f:\n"
        "        f.write(b'<worksheet xmlns=\"http://schemas.openxmlformats.org/spreadsheetml/2006/main\">'\n"
        '                b\'<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>\')\n'
        "        for _ in range(512):\n"
        "            f.write(b'A' * (1 << 20))\n"
        "        f.write(b'</t></is></c></row></sheetData></worksheet>')\n"
        "os.remove('base.xlsx')\n"
    )
    fake.add(fenced(bomb))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result = it.ask("Save the totals as report.xlsx with the columns region and revenue", attempts=1)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 256, grown_mib
    assert result.ok and [f.path for f in result.files] == ["report.xlsx"]
    assert (folder / "report.xlsx").stat().st_size < 8 * 1024 * 1024
