"""The IPAM API: visibility and write policy as a matrix, containment filters, CSV
import/export with every bad row reported, and the one error body."""
import pytest
from rest_framework.test import APIClient

from ipam import services
from ipam.models import Assignment, Prefix, Reservation
from ispcore.subscribers.services import enable_portal_login

pytestmark = pytest.mark.urls("tests.ipam.urls")
BASE = "/api/v1/ipam"
R = Prefix.Role


def client_for(user=None):
    c = APIClient()
    if user is not None:
        c.force_authenticate(user)
    return c


def ids(response):
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.fixture
def world(tenant, other_tenant, users, make_customer, nas, link_pool, delegated_pool):
    """Prefixes, a reservation and assignments of customers in different branches."""
    pool = services.create_prefix(actor=None, tenant=tenant, network="10.0.0.0/24", role=R.CUSTOMER_STATIC,
                                  gateway="10.0.0.1", nas=nas)
    infra = services.create_prefix(actor=None, tenant=tenant, network="10.255.0.0/24", role=R.INFRASTRUCTURE)
    direct = make_customer(username="direct")
    of_reseller = make_customer(node=users["nodes"]["reseller"], username="res-cust")
    of_sub = make_customer(node=users["nodes"]["sub"], username="sub-cust")
    of_other = make_customer(node=users["nodes"]["other_reseller"], username="other-cust")
    a = {c.username: services.assign_static_ip(c, actor=None) for c in (direct, of_reseller, of_sub, of_other)}
    a["iface"] = services.assign_interface(nas, infra, actor=None, interface="ether1")
    users["customer"] = enable_portal_login(of_reseller, actor=None, password="a-long-pass-123")
    foreign_pool = services.create_prefix(actor=None, tenant=other_tenant, network="10.0.0.0/24",
                                          role=R.CUSTOMER_STATIC)
    foreign_customer = make_customer(tenant_=other_tenant, username="foreign")
    a["foreign"] = services.assign_static_ip(foreign_customer, foreign_pool, actor=None)
    own_prefixes = set(Prefix.objects.filter(tenant=tenant).values_list("id", flat=True))
    return {"pool": pool, "infra": infra, "a": a, "own_prefixes": own_prefixes,
            "foreign_pool": foreign_pool, "customers": {"direct": direct, "res": of_reseller}}


def test_anonymous_gets_nothing(world):
    for path in ["prefixes/", "assignments/", "reservations/", "conflicts/", "prefixes/export/"]:
        assert client_for().get(f"{BASE}/{path}").status_code in (401, 403)
    assert client_for().post(f"{BASE}/prefixes/", {"network": "10.9.0.0/24", "role": "infrastructure"}).status_code \
        in (401, 403)


def test_visibility_matrix(world, users):
    a = world["a"]
    own_assignments = {x.id for k, x in a.items() if k != "foreign"}
    expected = {
        # role: (prefixes, assignments)
        "super_admin": (world["own_prefixes"] | {world["foreign_pool"].id}, own_assignments | {a["foreign"].id}),
        "admin": (world["own_prefixes"], own_assignments),
        "manager_nas": (world["own_prefixes"], own_assignments),
        "manager": (set(), set()),
        "reseller": (set(), {a["res-cust"].id, a["sub-cust"].id}),
        "sub_reseller": (set(), {a["sub-cust"].id}),
        "other_reseller": (set(), {a["other-cust"].id}),
        "customer": (set(), {a["res-cust"].id}),
        "card_distributor": (set(), set()),
        "other_admin": ({world["foreign_pool"].id}, {a["foreign"].id}),
    }
    for role, (prefixes, assignments) in expected.items():
        c = client_for(users[role])
        assert ids(c.get(f"{BASE}/prefixes/?page_size=500")) == prefixes, role
        assert ids(c.get(f"{BASE}/assignments/?page_size=500")) == assignments, role
        reservations = ids(c.get(f"{BASE}/reservations/"))
        assert bool(reservations) == (role in ("super_admin", "admin", "manager_nas")), role


def test_other_branch_and_tenant_get_404(world, users):
    a = world["a"]
    assert client_for(users["other_reseller"]).get(f"{BASE}/assignments/{a['res-cust'].id}/").status_code == 404
    assert client_for(users["other_admin"]).get(f"{BASE}/prefixes/{world['pool'].id}/").status_code == 404
    assert client_for(users["other_admin"]).delete(f"{BASE}/assignments/{a['direct'].id}/").status_code == 404
    assert client_for(users["reseller"]).get(f"{BASE}/prefixes/{world['pool'].id}/utilisation/").status_code == 404
    assert Assignment.objects.filter(pk=a["direct"].pk).exists()


@pytest.mark.parametrize("role,allowed", [
    ("admin", True), ("manager_nas", True), ("super_admin", True), ("manager", False), ("reseller", False),
    ("sub_reseller", False), ("customer", False), ("card_distributor", False),
])
def test_write_policy(world, users, role, allowed):
    c = client_for(users[role])
    before = (Prefix.objects.count(), Assignment.objects.count(), Reservation.objects.count())
    body = {"network": "10.50.0.0/24", "role": "customer_static"}
    if role == "super_admin":
        body["tenant"] = world["pool"].tenant_id
    r1 = c.post(f"{BASE}/prefixes/", body, format="json")
    r2 = c.post(f"{BASE}/reservations/", {**body, "network": "10.0.0.250", "kind": "router"}, format="json")
    r3 = c.post(f"{BASE}/assignments/", {"kind": "ipv4_static", "customer": world["customers"]["direct"].id},
                format="json")  # already has one: idempotent 201
    r4 = c.delete(f"{BASE}/assignments/{world['a']['direct'].id}/")
    if allowed:
        assert (r1.status_code, r2.status_code, r3.status_code, r4.status_code) == (201, 201, 201, 204), r1.content
    else:
        assert {r1.status_code, r2.status_code, r3.status_code} == {403}
        assert r4.status_code in (403, 404)
        assert (Prefix.objects.count(), Assignment.objects.count(), Reservation.objects.count()) == before
        assert r1.json()["error"]["status"] == 403


def test_within_and_contains_filters(world, users):
    c = client_for(users["admin"])
    got = c.get(f"{BASE}/prefixes/?within=10.0.0.0/16").json()["results"]
    assert [p["network"] for p in got] == ["10.0.0.0/24"]
    got = c.get(f"{BASE}/prefixes/?within=2001:db8::/32").json()["results"]
    assert {p["network"] for p in got} == {"2001:db8::/60", "2001:db8:100::/54"}
    got = c.get(f"{BASE}/prefixes/?contains=10.255.0.77").json()["results"]
    assert [p["network"] for p in got] == ["10.255.0.0/24"]
    got = c.get(f"{BASE}/assignments/?within=10.0.0.0/30").json()["results"]
    assert [x["network"] for x in got] == ["10.0.0.2/32", "10.0.0.3/32"]
    got = c.get(f"{BASE}/reservations/?within=10.0.0.0/24").json()["results"]
    assert [x["network"] for x in got] == ["10.0.0.1/32"]
    bad = c.get(f"{BASE}/prefixes/?within=10.0.0/33")
    assert bad.status_code == 400 and bad.json()["error"]["fields"]["within"]
    # a reseller's `within` search still sees only its own customers
    got = client_for(users["reseller"]).get(f"{BASE}/assignments/?within=10.0.0.0/8").json()["results"]
    assert {x["customer_username"] for x in got} == {"res-cust", "sub-cust"}


def test_prefix_crud_and_errors(world, users):
    c = client_for(users["admin"])
    r = c.post(f"{BASE}/prefixes/", {"network": "10.0.0.128/25", "role": "customer_dynamic"}, format="json")
    assert r.status_code == 400
    assert "lies inside 10.0.0.0/24" in r.json()["error"]["fields"]["parent"][0]
    r = c.post(f"{BASE}/prefixes/", {"network": "10.0.0.128/25", "role": "customer_dynamic",
                                     "parent": world["pool"].id}, format="json")
    assert r.status_code == 201, r.content
    r = c.post(f"{BASE}/prefixes/", {"network": "10.1.0.5/24", "role": "customer_static"}, format="json")
    assert r.status_code == 400 and "host bits" in r.json()["error"]["fields"]["network"][0]
    r = c.post(f"{BASE}/prefixes/", {"network": "10.0.0.0/8", "role": "infrastructure",
                                     "parent": world["foreign_pool"].id}, format="json")
    assert r.status_code == 400 and "parent" in r.json()["error"]["fields"]  # not visible: "does not exist"
    pid = world["pool"].id
    r = c.patch(f"{BASE}/prefixes/{pid}/", {"name": "static-a"}, format="json")
    assert r.status_code == 200 and r.json()["name"] == "static-a" and r.json()["assigned"] == 4
    r = c.patch(f"{BASE}/prefixes/{pid}/", {"network": "10.0.1.0/24"}, format="json")
    assert r.status_code == 400
    r = c.delete(f"{BASE}/prefixes/{pid}/")
    assert r.status_code == 400 and "assignments" in r.json()["error"]["message"]


def test_assign_release_and_ipv6(world, users, make_customer):
    c = client_for(users["manager_nas"])
    cust = make_customer()
    r = c.post(f"{BASE}/assignments/", {"kind": "ipv4_static", "customer": cust.id, "address": "10.0.0.2"},
               format="json")
    assert r.status_code == 400
    assert r.json()["error"]["fields"]["address"] == ["10.0.0.2/32 is already assigned to customer direct."]
    r = c.post(f"{BASE}/assignments/", {"kind": "ipv4_static", "customer": cust.id, "address": "10.0.0.9"},
               format="json")
    assert r.status_code == 201 and r.json()["network"] == "10.0.0.9/32"
    r = c.post(f"{BASE}/assignments/ipv6/", {"customer": cust.id}, format="json")
    assert r.status_code == 201
    assert [x["network"] for x in r.json()] == ["2001:db8::/64", "2001:db8:100::/56"]
    r = c.post(f"{BASE}/assignments/", {"kind": "interface", "nas": world["a"]["iface"].nas_id,
                                        "address": "10.255.0.9", "interface": "ether2"}, format="json")
    assert r.status_code == 201
    aid = Assignment.objects.get(customer=cust, kind="ipv4_static").id
    assert c.delete(f"{BASE}/assignments/{aid}/").status_code == 204
    cust.refresh_from_db()
    assert cust.static_ip is None


def test_utilisation_endpoints(world, users):
    c = client_for(users["admin"])
    r = c.get(f"{BASE}/prefixes/{world['pool'].id}/utilisation/")
    assert r.status_code == 200
    body = r.json()
    assert (body["total"], body["assigned"], body["reserved"], body["free"]) == (256, 4, 3, 249)
    r = c.get(f"{BASE}/prefixes/utilisation/?role=customer_static")
    assert [x["network"] for x in r.json()["results"]] == ["10.0.0.0/24"]


def test_conflicts_endpoint(world, users):
    assert client_for(users["admin"]).get(f"{BASE}/conflicts/").json() == {"count": 0, "conflicts": []}
    assert client_for(users["manager_nas"]).get(f"{BASE}/conflicts/").status_code == 200
    for role in ("reseller", "manager", "customer"):
        assert client_for(users[role]).get(f"{BASE}/conflicts/").status_code == 403


def test_prefix_csv_round_trip(world, users, other_tenant):
    text = client_for(users["admin"]).get(f"{BASE}/prefixes/export/").content.decode()
    assert text.splitlines()[0] == "network,role,parent,nas,delegated_prefixlen,name,description"
    assert "10.0.0.0/24,customer_static" in text
    # the other ISP imports the same plan (the NAS column names a router it lacks: report it)
    r = client_for(users["other_admin"]).post(f"{BASE}/prefixes/import/", text, content_type="text/csv")
    assert r.status_code == 400
    rows = r.json()["error"]["rows"]
    assert [row["row"] for row in rows] == [2]  # its NAS is unknown there
    assert "NAS" in rows[0]["errors"]["nas"][0]
    text_no_nas = "\n".join(line for line in text.splitlines() if "10.0.0.0/24" not in line)
    r = client_for(users["other_admin"]).post(f"{BASE}/prefixes/import/?dry_run=1", text_no_nas,
                                              content_type="text/csv")
    assert r.status_code == 200 and r.json()["valid"] == 3 and r.json()["created"] == 0
    r = client_for(users["other_admin"]).post(f"{BASE}/prefixes/import/", text_no_nas, content_type="text/csv")
    assert r.status_code == 201 and r.json()["created"] == 3
    assert Prefix.objects.filter(tenant=other_tenant).count() == 4


def test_prefix_import_reports_every_bad_row_and_writes_nothing(world, users, tenant):
    csv_text = (
        "network,role,parent,delegated_prefixlen\n"
        "172.20.0.0/16,infrastructure,,\n"          # 2 ok
        "172.20.1.0/24,customer_static,172.20.0.0/16,\n"  # 3 ok (parent earlier in the file)
        "172.20.1.0/25,customer_static,,\n"         # 4 inside 172.20.0.0/16 without parent
        "10.0.0.0/24,customer_static,,\n"           # 5 exists
        "2001:db8:900::/48,ipv6_delegated,,48\n"    # 6 bad delegation size
        "banana,infrastructure,,\n"                 # 7 not a network
        "172.21.0.0/16,spaceship,,\n"               # 8 unknown role
        "172.22.0.0/16,infrastructure,9.9.9.0/24,\n"  # 9 unknown parent
    )
    before = Prefix.objects.count()
    r = client_for(users["admin"]).post(f"{BASE}/prefixes/import/", csv_text, content_type="text/csv")
    assert r.status_code == 400
    body = r.json()["error"]
    assert [row["row"] for row in body["rows"]] == [4, 5, 6, 7, 8, 9]
    assert "nothing was imported" in body["message"]
    assert Prefix.objects.count() == before
    r = client_for(users["admin"]).post(f"{BASE}/prefixes/import/", "role\ncustomer_static\n",
                                        content_type="text/csv")
    assert r.json()["error"]["rows"][0]["errors"]["header"] == ["Missing column(s): network."]


def test_assignment_csv_import_and_export(world, users, make_customer, tenant):
    from django.core.files.uploadedfile import SimpleUploadedFile

    c = client_for(users["admin"])
    text = c.get(f"{BASE}/assignments/export/?kind=ipv4_static").content.decode()
    assert text.splitlines()[0] == "network,kind,customer,nas,interface,description,prefix,since"
    assert len(text.splitlines()) == 5
    new = [make_customer(username=f"imp{i}") for i in range(3)]
    csv_text = (
        "network,kind,customer,nas,interface\n"
        "10.0.0.20,ipv4_static,imp0,,\n"              # 2 ok
        "10.0.0.2,ipv4_static,imp1,,\n"               # 3 taken by 'direct'
        "10.0.0.20,ipv4_static,imp2,,\n"              # 4 taken by row 2
        "10.0.0.1,ipv4_static,imp2,,\n"               # 5 the gateway
        "10.9.0.1,ipv4_static,imp2,,\n"               # 6 outside every prefix
        "10.0.0.21,ipv4_static,nobody,,\n"            # 7 unknown customer
        "2001:db8:0:5::/64,ipv6_link,imp0,,\n"        # 8 ok
        "10.255.0.30,interface,,172.99.0.1,ether3\n"  # 9 unknown NAS
        "10.0.0.22,teleport,imp1,,\n"                 # 10 unknown kind
    )
    upload = SimpleUploadedFile("a.csv", csv_text.encode(), content_type="text/csv")
    r = c.post(f"{BASE}/assignments/import/", {"file": upload}, format="multipart")
    assert r.status_code == 400
    rows = {row["row"]: row["errors"] for row in r.json()["error"]["rows"]}
    assert sorted(rows) == [3, 4, 5, 6, 7, 9, 10]
    assert "already assigned to customer direct" in rows[3]["address"][0]
    assert "already assigned to customer imp0" in rows[4]["address"][0]
    assert "reserved" in rows[5]["address"][0]
    assert not Assignment.objects.filter(customer__in=new).exists()
    good = "network,kind,customer\n10.0.0.20,ipv4_static,imp0\n2001:db8:0:5::/64,ipv6_link,imp0\n"
    r = c.post(f"{BASE}/assignments/import/", {"csv": good}, format="json")
    assert r.status_code == 201 and r.json()["created"] == 2
    assert Assignment.objects.filter(customer=new[0]).count() == 2


def test_list_query_budget(world, users, make_customer):
    """Lists cost the same number of queries however many rows they show."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    c = client_for(users["admin"])

    def count(path):
        with CaptureQueriesContext(connection) as ctx:
            assert c.get(f"{BASE}/{path}").status_code == 200
        return len(ctx.captured_queries)

    small = {p: count(p) for p in ("prefixes/", "assignments/", "reservations/")}
    for _ in range(10):
        services.assign_static_ip(make_customer(), actor=None)
    services.create_prefix(actor=None, tenant=world["pool"].tenant, network="10.60.0.0/24", role=R.INFRASTRUCTURE)
    assert {p: count(p) for p in small} == small
    assert max(small.values()) <= 6
