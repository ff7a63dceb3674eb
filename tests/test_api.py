import ssh_toolkit


def test_package_level_api_resolves_lazily():
    from ssh_toolkit.card import load_card
    from ssh_toolkit.gate import check_gate

    assert ssh_toolkit.load_card is load_card and ssh_toolkit.check_gate is check_gate
    for name in ssh_toolkit.__all__:
        assert callable(getattr(ssh_toolkit, name)), name
    try:
        ssh_toolkit.no_such_name  # noqa: B018
    except AttributeError as e:
        assert "no attribute 'no_such_name'" in str(e)
    else:
        raise AssertionError("unknown names must raise AttributeError")
