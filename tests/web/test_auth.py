"""Users file, argon2 hashes, sessions and the failed-login limiter (pedstream.web.auth)."""

from __future__ import annotations

import pytest

from pedstream.web.auth import LoginLimiter, Sessions, Users, WebError, add_user


def test_users_file_round_trip_holds_hashes_not_passwords(tmp_path):
    path = tmp_path / "users"
    assert add_user(path, "ana", "clinician", "correct horse") is True
    assert add_user(path, "vic", "viewer", "battery staple") is True
    assert add_user(path, "vic", "clinician", "battery staple 2") is False  # updated in place
    text = path.read_text()
    assert "correct horse" not in text and text.count("$argon2id$") == 2
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    users = Users.from_file(path)
    assert users.verify("ana", "correct horse").role == "clinician"
    assert users.verify("vic", "battery staple 2").may_act
    assert users.verify("ana", "wrong") is None and users.verify("nobody", "correct horse") is None


@pytest.mark.parametrize("text", ["ana:admin:$argon2id$x\n", "ana:viewer:plaintext\n", "# nobody\n", "bad name:viewer:$argon2id$x\n"])
def test_a_bad_users_file_is_one_clear_error(tmp_path, text):
    path = tmp_path / "users"
    path.write_text(text)
    with pytest.raises(WebError, match="users file") as err:
        Users.from_file(path)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_add_user_refuses_bad_names_roles_and_short_passwords(tmp_path):
    for args in (("a b", "viewer", "longenough"), ("ana", "root", "longenough"), ("ana", "viewer", "short")):
        with pytest.raises(WebError):
            add_user(tmp_path / "u", *args)


def test_sessions_expire_and_are_keyed_by_a_hash_of_the_token():
    users, password = Users.one_time()
    user = users.verify("demo", password)
    assert user is not None and user.role == "clinician"
    sessions = Sessions(lifetime_s=3600)
    token, sess = sessions.create(user)
    assert sessions.get(token) is sess and token not in sessions._by_key
    assert sessions.get("forged") is None and sessions.get("x" * 500) is None
    sessions.drop(token)
    assert sessions.get(token) is None
    short = Sessions(lifetime_s=1e-9)
    token, _ = short.create(user)
    assert short.get(token) is None


def test_failed_logins_are_limited_per_name_and_per_client():
    lim = LoginLimiter(max_failures=3, window_s=60)
    for _ in range(3):
        assert lim.retry_after("ana", "10.0.0.1") == 0
        lim.failed("ana", "10.0.0.1")
    assert 0 < lim.retry_after("ana", "10.0.0.2") <= 60  # the name is locked from anywhere
    assert 0 < lim.retry_after("vic", "10.0.0.1") <= 60  # and the client for any name
    assert lim.retry_after("vic", "10.0.0.2") == 0
