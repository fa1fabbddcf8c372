"""`flask users ...` and `flask bootstrap`, through Flask's CLI runner."""
from __future__ import annotations

from werkzeug.security import check_password_hash

from portal.models import Campaign, User, db


def user(name: str) -> User | None:
    return db.session.execute(db.select(User).filter_by(username=name)).scalar_one_or_none()


def test_create_list_passwd_delete(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["users", "create", "carol", "--admin", "--password", "s3cret"])
    assert result.exit_code == 0, result.output
    carol = user("carol")
    assert carol.is_admin and check_password_hash(carol.password_hash, "s3cret")
    assert carol.password_hash != "s3cret"

    listing = runner.invoke(args=["users", "list"]).output
    assert "carol\tadmin\t0 campaigns" in listing and "alice\tuser" in listing

    assert runner.invoke(args=["users", "passwd", "carol", "--password", "n3w"]).exit_code == 0
    db.session.refresh(carol)
    assert check_password_hash(carol.password_hash, "n3w")

    result = runner.invoke(args=["users", "create", "carol", "--password", "x"])
    assert result.exit_code != 0 and "already exists" in result.output

    db.session.add(Campaign(owner_id=carol.id, name="n", description="d", target_market="t",
                            campaign_message="m", products_description="p", source_type="upload"))
    db.session.commit()
    assert runner.invoke(args=["users", "delete", "carol", "--yes"]).exit_code == 0
    db.session.expire_all()
    assert user("carol") is None
    assert db.session.query(Campaign).count() == 0


def test_unknown_user_is_a_clear_error(app):
    result = app.test_cli_runner().invoke(args=["users", "passwd", "nobody", "--password", "x"])
    assert result.exit_code != 0 and "No user named 'nobody'" in result.output


def test_bootstrap_creates_the_admin_once_and_prints_the_password_once(tmp_path):
    from portal import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "t", "INSTANCE_DIR": str(tmp_path),
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'boot.db'}",
                      "CELERY_BROKER_URL": "memory://", "ADMIN_USER": "boss", "ADMIN_PASSWORD": None})
    runner = app.test_cli_runner()
    first = runner.invoke(args=["bootstrap"])
    assert first.exit_code == 0, first.output
    password = first.output.split("with password: ")[1].split()[0]
    second = runner.invoke(args=["bootstrap"])
    assert second.exit_code == 0 and "password" not in second.output
    with app.app_context():
        boss = user("boss")
        assert boss.is_admin and check_password_hash(boss.password_hash, password)
        db.engine.dispose()
