"""POS ingestion moves a processed delivery out of landing only as the version it read: a
re-upload under the same name, landing at the worst moment (just before the delete), is
never lost. Against moto's S3, which enforces ``If-Match`` on DeleteObject."""

from __future__ import annotations

import gzip

import pytest
from botocore.exceptions import ClientError

from connectors import aws
from etl.pos_ingestion import PosIngestion
from pizzastream.pos_batches import DATA_SUFFIX, LANDING_PREFIX, MANIFEST_SUFFIX, batch_key
from tests.etl.test_pos_ingestion_poison import SYSTEM, deliver, loaded_orders, valid_lines
from tests.pos_support import landing_keys, query

pytestmark = pytest.mark.integration


def test_moto_refuses_a_delete_whose_etag_no_longer_matches(clean_stack):
    s3, bucket = aws.client(clean_stack, "s3"), clean_stack["Lake"]["bucket"]
    first = s3.put_object(Bucket=bucket, Key="pos/landing/x", Body=b"first")["ETag"]
    s3.put_object(Bucket=bucket, Key="pos/landing/x", Body=b"second")
    with pytest.raises(ClientError) as refused:
        s3.delete_object(Bucket=bucket, Key="pos/landing/x", IfMatch=first)
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert s3.get_object(Bucket=bucket, Key="pos/landing/x")["Body"].read() == b"second"


@pytest.mark.parametrize("replaced", [DATA_SUFFIX, MANIFEST_SUFFIX])
def test_a_re_upload_just_before_the_move_deletes_it_stays_for_the_next_run(
    clean_stack, monkeypatch, replaced
):
    ingestion = PosIngestion(clean_stack)
    s3, bucket = aws.client(clean_stack, "s3"), clean_stack["Lake"]["bucket"]
    batch = deliver(clean_stack, valid_lines(1, 2))
    key = batch_key(LANDING_PREFIX, SYSTEM, batch, replaced)
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    re_upload = (
        gzip.compress(gzip.decompress(original), compresslevel=1, mtime=0)
        if replaced == DATA_SUFFIX
        else original.replace(b"}", b" }")
    )  # same meaning, new bytes and ETag
    assert re_upload != original
    delete = ingestion._s3.delete_object

    def pos_uploads_again_first(**request):
        if request["Key"] == key:
            s3.put_object(Bucket=bucket, Key=key, Body=re_upload)
        return delete(**request)

    monkeypatch.setattr(ingestion._s3, "delete_object", pos_uploads_again_first)

    assert [o.status for o in ingestion.run_once([SYSTEM])] == ["loaded"]

    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == re_upload  # not lost
    assert key in landing_keys(clean_stack, LANDING_PREFIX)
    monkeypatch.undo()
    assert [o.status for o in PosIngestion(clean_stack).run_once([SYSTEM])] == ["duplicate"]
    assert landing_keys(clean_stack, LANDING_PREFIX) == []
    archived = batch_key("pos/archive/", SYSTEM, batch, replaced)
    assert s3.get_object(Bucket=bucket, Key=archived)["Body"].read() == re_upload
    assert query(clean_stack, "SELECT status, deliveries FROM pos_batch") == [("published", 2)]
    assert loaded_orders(clean_stack) == {"S0005-I000001", "S0005-I000002"}
