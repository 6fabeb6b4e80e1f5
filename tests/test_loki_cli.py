"""`kaudit up --loki-mode ...` at the command line: usage errors, credentials from a file or the
environment, and the sizing in --dry-run."""

from __future__ import annotations

import json

import pytest

from kaudit.core.errors import UsageError
from kaudit.adapters.storage_credentials import load

ACCESS, SECRET = "AKIAKAUDITCLITEST01", "kaudit-cli-secret-0123456789"
SSD = ["--stack", "loki", "--loki-mode", "simple-scalable"]


@pytest.fixture
def no_cloud_env(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("argv,needle", [
    (["--stack", "loki", "--loki-mode", "distributed"], "--loki-mode distributed needs object storage: the loki chart refuses filesystem storage for it"),
    (SSD, "--loki-mode simple-scalable needs object storage"),
    (["--stack", "loki", "--loki-mode", "micro"], "--loki-mode: 'micro' is not one of monolithic, simple-scalable, distributed"),
    (["--loki-mode", "simple-scalable", "--object-storage", "minio"], "--loki-mode simple-scalable: only with --stack loki"),
    ([*SSD, "--object-storage", "minio", "--loki-url", "http://loki.example:3100"], "--loki-mode simple-scalable: not with --loki-url"),
    (["--stack", "loki", "--events-per-second", "100"], "--events-per-second: only with --loki-mode simple-scalable or distributed"),
    (["--stack", "loki", "--object-storage", "s3"], "--object-storage: only with --loki-mode simple-scalable or distributed"),
    ([*SSD, "--object-storage", "azure"], "--object-storage: 'azure' is not one of minio, s3, gcs"),
    ([*SSD, "--object-storage", "minio"], "--object-storage minio needs MinIO's root credentials"),
    ([*SSD, "--object-storage", "s3"], "--object-storage s3: no bucket"),
    ([*SSD, "--object-storage", "s3", "--bucket", "a-b", "--bucket-chunks", "c-d"], "--bucket: give either --bucket or --bucket-chunks/--bucket-ruler"),
    ([*SSD, "--object-storage", "s3", "--bucket-chunks", "chunks-b"], "--object-storage s3: no bucket"),
    ([*SSD, "--object-storage", "s3", "--bucket", "Audit_Logs!"], "--bucket: 'Audit_Logs!' is not a bucket name"),
    ([*SSD, "--object-storage", "gcs", "--bucket", "audit", "--s3-region", "eu"], "--s3-region: only with --object-storage s3"),
    ([*SSD, "--object-storage", "s3", "--bucket", "audit", "--s3-endpoint", "ftp://x"], "--s3-endpoint: 'ftp://x' is not a host[:port]"),
    ([*SSD, "--object-storage", "s3", "--bucket", "audit", "--retention", "12h"], "--retention 12h: less than 24h"),
    ([*SSD, "--object-storage", "s3", "--bucket", "audit", "--retention", "a month"], "--retention: 'a month' is not a duration"),
    ([*SSD, "--object-storage", "s3", "--bucket", "audit", "--storage-credentials", "/nonexistent/keys"], "--storage-credentials /nonexistent/keys: no such file"),
    ([*SSD, "--object-storage", "s3", "--bucket", "audit", "--storage-credentials", "/etc/hostname", "--storage-secret", "x"], "--storage-secret: not with --storage-credentials"),
])
def test_invalid_combinations_exit_2_with_one_line(cli, no_cloud_env, argv, needle):
    r = cli(["up", "--host", "local", "--only", "stack", "--dry-run", *argv])
    assert r.code == 2, r.err
    assert needle in r.err
    assert "Traceback" not in r.err
    assert len([x for x in r.err.splitlines() if x.strip()]) <= 2  # the error, and at most a hint


def test_minio_with_only_one_key_in_the_environment_says_which_is_missing(cli, no_cloud_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    r = cli(["up", "--host", "local", "--only", "stack", "--dry-run", *SSD, "--object-storage", "minio"])
    assert r.code == 2 and "AWS_SECRET_ACCESS_KEY is not set but AWS_ACCESS_KEY_ID is" in r.err


def test_dry_run_prints_the_sizing_and_no_credential(cli, tmp_path, no_cloud_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    kc = tmp_path / "kubeconfig"
    kc.write_text("apiVersion: v1\nkind: Config\n")
    r = cli([
        "-v", "up", "--host", "local", "--rootfs", tmp_path, "--only", "stack", "--dry-run", "--kubeconfig", kc,
        *SSD, "--object-storage", "minio", "--events-per-second", "2000", "--retention", "30d", "--loki-replicas", "1",
    ])
    assert r.code == 0, r.err
    text = r.out + r.err
    assert "volume: 2000 events/s × 1,803 B/event = 3.6 MB/s = 311.6 GB/day" in text
    assert "ingestion_rate_mb: max(Loki's 4, ⌈2 × 3.6 MB/s ÷ 1 MiB⌉) = 7" in text
    assert "max_line_size: 2 × the largest event (403,305 B)" in text
    assert "replicas: write 1, read 1, backend 1 (--loki-replicas); replication_factor 1" in text
    assert "retention: 720h" in text
    assert "MinIO subchart is deprecated, announced for removal on 2026-10-31" in text
    assert "would apply: secret/kaudit-object-storage in namespace kaudit (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, rootPassword, rootUser)" in text
    assert "deploymentMode: SimpleScalable" in text  # -v prints the values
    assert ACCESS not in text and SECRET not in text


def test_monolithic_default_dry_run_says_nothing_about_sizing(cli, tmp_path, no_cloud_env):
    kc = tmp_path / "kubeconfig"
    kc.write_text("apiVersion: v1\nkind: Config\n")
    r = cli(["up", "--host", "local", "--rootfs", tmp_path, "--only", "stack", "--dry-run", "--kubeconfig", kc, "--stack", "loki"])
    assert r.code == 0, r.err
    assert "sizing" not in r.out + r.err and "kaudit-object-storage" not in r.out + r.err


# -- credentials from a file or the environment ------------------------------------------


def test_env_file_and_aws_credentials_file_both_work(tmp_path):
    env_file = tmp_path / "s3.env"
    env_file.write_text(f"# keys for the audit bucket\nexport AWS_ACCESS_KEY_ID={ACCESS}\nAWS_SECRET_ACCESS_KEY='{SECRET}'\n")
    assert load("s3", env_file, {}).data == {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}
    ini = tmp_path / "credentials"
    ini.write_text(f"[other]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n[default]\naws_access_key_id = {ACCESS}\naws_secret_access_key = {SECRET}\n")
    creds = load("s3", ini, {"AWS_ACCESS_KEY_ID": "ignored", "AWS_SECRET_ACCESS_KEY": "ignored"})
    assert creds.data == {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}
    assert creds.source == str(ini) and SECRET not in repr(creds)


def test_environment_and_none(tmp_path):
    env = {"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET}
    assert load("minio", None, env).data["rootPassword"] == SECRET
    assert load("s3", None, {}) is None  # Loki then uses its pods' identity
    with pytest.raises(UsageError, match="at least 8"):
        load("minio", None, {"AWS_ACCESS_KEY_ID": "kaudit", "AWS_SECRET_ACCESS_KEY": "short"})


def test_bad_credential_files_name_the_file_and_line(tmp_path):
    f = tmp_path / "keys"
    f.write_text(f"AWS_ACCESS_KEY_ID={ACCESS}\nthis line has no equals sign\n")
    with pytest.raises(UsageError) as e:
        load("s3", f, {})
    assert e.value.message == f"--storage-credentials {f}:2: not KEY=VALUE"
    f.write_text(f"AWS_ACCESS_KEY_ID={ACCESS}\n")
    with pytest.raises(UsageError, match="no AWS_SECRET_ACCESS_KEY"):
        load("s3", f, {})


def test_gcs_key_from_file_or_google_application_credentials(tmp_path):
    key = tmp_path / "sa.json"
    text = json.dumps({"type": "service_account", "project_id": "p", "private_key": "k"})
    key.write_text(text)
    assert load("gcs", key, {}).data == {"key.json": text}
    assert load("gcs", None, {"GOOGLE_APPLICATION_CREDENTIALS": str(key)}).data == {"key.json": text}
    assert load("gcs", None, {}) is None
    key.write_text("{not json")
    with pytest.raises(UsageError, match=r"sa.json:1:2: not JSON"):
        load("gcs", key, {})
    key.write_text("[]")
    with pytest.raises(UsageError, match="not a Google credentials file"):
        load("gcs", key, {})

