"""Scenario files: the named ones load, errors say where, flags override."""
import pytest

from loadtest import scenario


@pytest.mark.parametrize("name", scenario.names())
def test_every_named_scenario_loads_and_is_described(name):
    sc = scenario.load(name)
    assert sc.name == name and sc.description


def test_the_issue_asks_for_these_scenarios():
    assert {"steady", "ramp", "burst", "reconnect-storm"} <= set(scenario.names())


def test_overrides_beat_the_file_and_are_validated():
    sc = scenario.load("steady", {"load.rate": 123, "gateways.count": 2})
    assert (sc.load.rate, sc.gateways.count, sc.load.mode) == (123, 2, "open")
    with pytest.raises(scenario.ScenarioError, match=r"\$\.load\.rate"):
        scenario.load("steady", {"load.rate": -1})
    with pytest.raises(scenario.ScenarioError, match="unknown field `bogus`"):
        scenario.load("steady", {"load.bogus": 1})


@pytest.mark.parametrize("overrides,message", [
    ({"sessions.profile": [{"rating_groups": [1, 4]}]}, "rating_groups"),
    ({"sessions.profile": [{"use_percent": [50, 120]}]}, "allow_overuse"),
    ({"sessions.profile": [{"updates": [5, 2]}]}, "updates"),
    ({"subscribers.first": "861", "subscribers.last": "86"}, "ascending"),
    ({"load.duration": 0, "load.requests": 0}, "duration"),
    ({"target": "nowhere"}, "HOST:PORT"),
    ({"subscribers.plan_octets": "lots"}, "not a size"),
])
def test_inconsistent_scenarios_are_refused(overrides, message):
    with pytest.raises(scenario.ScenarioError, match=message):
        scenario.load("steady", overrides)


def test_overuse_only_when_the_scenario_says_so():
    sc = scenario.load("steady", {"sessions.allow_overuse": True,
                                  "sessions.profile": [{"use_percent": [100, 150]}]})
    assert sc.sessions.profile[0].use_percent == (100, 150)


def test_a_file_path_works_and_names_itself(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[load]\nmode = "open"\nrate = 77\n')
    sc = scenario.load(str(path))
    assert (sc.name, sc.load.rate) == ("mine", 77)
    path.write_text("[load\n")
    with pytest.raises(scenario.ScenarioError, match="mine.toml"):
        scenario.load(str(path))


@pytest.mark.parametrize("text,octets", [("0", 0), (1024, 1024), ("10 MB", 10 << 20),
                                         ("1.5GB", 3 << 29), ("512 kb", 512 << 10)])
def test_sizes_are_binary(text, octets):
    assert scenario.octets(int(text) if text == "0" else text) == octets
