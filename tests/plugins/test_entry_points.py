"""Families shipped by an installed package through entry points of group hyperzero.families: the package of
docs/own-environment.md §5 is built and installed with pip (into a scratch folder, not this venv), then found by
name, lazily, by the CLI; a broken entry point is named in the error."""
import re
import subprocess
import sys
import textwrap

from tests.plugins.conftest import PENDULUM, ROOT, cli_env


def _toml_snippet() -> str:
    text = (ROOT / "docs" / "own-environment.md").read_text()
    return re.search(r"```toml\n(.*?)\n```", text, re.S).group(1)


def test_an_installed_package_offers_its_family_by_name(tmp_path):
    package = tmp_path / "my-families"
    (package / "my_families").mkdir(parents=True)
    (package / "my_families" / "__init__.py").write_text("")
    (package / "my_families" / "pendulum.py").write_text(PENDULUM.read_text())
    (package / "pyproject.toml").write_text(textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "my-families"
        version = "0.1.0"

        """) + _toml_snippet() + "\n")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--target", str(site), str(package)], check=True, capture_output=True, timeout=300)
    env = cli_env(PYTHONPATH=str(site))
    # lazily: nothing is imported before the name is looked up
    probe = ("import sys, hyperzero.envs as E; assert 'pendulum-g' not in E.FAMILIES; "
             "assert 'my_families.pendulum' not in sys.modules; assert 'pendulum-g' in E.family_names(); "
             "f = E.get_family('pendulum-g'); print(f.kind, f.obs_dim, E.family_source('pendulum-g'))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["gymnasium", "3", "module", "my_families.pendulum"]
    listed = subprocess.run(["hyperzero", "envs", "--family", "pendulum-g"], env=env, capture_output=True, text=True,
                            timeout=300)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("pendulum-g  (hyperzero/pendulum-g-v0; obs 3, act 1, 200 steps, gymnasium")


def test_a_broken_entry_point_is_named(tmp_path):
    site = tmp_path / "site"
    dist = site / "broken_families-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-families\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hyperzero.families]\nhopper-hop = broken_families:FAMILY\n"
                                           "reacher-far = broken_families:nothing\n")
    (site / "broken_families.py").write_text("FAMILY = object()\n\ndef nothing():\n    return None\n")
    env = cli_env(PYTHONPATH=str(site))
    out = subprocess.run(["hyperzero", "envs", "--family", "hopper-hop"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2
    assert ("hyperzero: error: entry point hopper-hop = broken_families:FAMILY (group hyperzero.families, package "
            "broken-families): expected a family object (hyperzero.envs.Family for a dm_control domain, "
            "GymnasiumFamily for a Gymnasium env), got object") in out.stderr
    out = subprocess.run(["hyperzero", "envs", "--family", "reacher-far"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2
    assert "entry point reacher-far = broken_families:nothing" in out.stderr
    assert "registered no family named 'reacher-far'" in out.stderr
    # a shipped family is not affected by a broken plugin that is never looked up
    out = subprocess.run(["hyperzero", "envs", "--family", "cheetah-run"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    # listing every family lists the good ones and names the broken ones
    out = subprocess.run(["hyperzero", "envs"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and out.stdout.startswith("cheetah-run  (hyperzero/cheetah-run-v0")
    assert out.stderr.count("hyperzero envs: entry point") == 2
