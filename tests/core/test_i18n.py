"""The UI speaks English and Bangla: the same error in the caller's language."""
import pytest
from rest_framework.test import APIClient

from tests.world import build_world


@pytest.mark.django_db
def test_validation_errors_follow_accept_language():
    world = build_world()
    client = APIClient()
    client.force_authenticate(world["u:adminA"])
    payload = {"node": world["node:r1"].pk, "customer_type": "pppoe", "username": "cust-r1", "password": "secret1",
               "full_name": "X", "mobile": "01712345678"}
    english = client.post("/api/v1/customers/", payload, format="json")
    assert english.json()["error"]["fields"]["username"] == ["This username is already used in this ISP."]
    bangla = client.post("/api/v1/customers/", payload, format="json", HTTP_ACCEPT_LANGUAGE="bn")
    assert bangla.json()["error"]["fields"]["username"] == ["এই আইএসপিতে এই ইউজারনেম আগেই ব্যবহৃত হয়েছে।"]
