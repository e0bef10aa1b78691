"""Links and configs diffed against the lattice; undeploy; app status."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.wadm.wadm_sim import apply, converge, host, lattice, manifest, placements
from trellis.wadm.commands import DeleteConfig, DeleteLink, PutConfig, PutLink, StartComponent, StopComponent
from trellis.wadm.manifest import load_manifest
from trellis.wadm.observed import APP_ANNOTATION, Observed, ObservedConfig, ObservedHost, ObservedLink, RunningComponent
from trellis.wadm.scaler import AppState, reconcile, status, undeploy, undeploy_status

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "wadm"

KV_APP = """
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: shop
  annotations: {{version: {version}}}
spec:
  components:
    - name: cart
      type: component
      properties:
        image: ghcr.io/acme/cart:1
        config:
          - name: settings
            properties: {{currency: EUR}}
      traits:
        - type: spreadscaler
          properties: {{instances: 2}}
{links}
    - name: kv
      type: capability
      properties:
        image: builtin:keyvalue
    - name: kv2
      type: capability
      properties:
        image: builtin:keyvalue-2
"""

KV_LINK = """
        - type: link
          properties:
            target:
              name: {target}
              config:
                - name: bucket
                  properties: {{bucket: {bucket}}}
            namespace: wasi
            package: keyvalue
            interfaces: [{interfaces}]
"""


def shop(*, version: str = "v1", target: str = "kv", bucket: str = "carts", interfaces: str = "store",
         links: str | None = None) -> str:
    if links is None:
        links = KV_LINK.format(target=target, bucket=bucket, interfaces=interfaces)
    return KV_APP.format(version=version, links=links)


def two_hosts() -> Observed:
    return lattice(host("a"), host("b"))


def test_inline_configs_are_put_before_anything_that_names_them() -> None:
    cmds = reconcile(manifest(shop()), two_hosts())
    kinds = [type(c).__name__ for c in cmds]
    assert kinds[:2] == ["PutConfig", "PutConfig"]
    puts = {c.name: dict(c.values) for c in cmds if isinstance(c, PutConfig)}
    assert puts == {"shop-settings": {"currency": "EUR"}, "shop-bucket": {"bucket": "carts"}}
    start = next(c for c in cmds if isinstance(c, StartComponent))
    assert start.config == ("shop-settings",)
    (link,) = [c for c in cmds if isinstance(c, PutLink)]
    assert (link.source_id, link.target, link.namespace, link.package, link.interfaces, link.name) == (
        "shop-cart", "shop-kv", "wasi", "keyvalue", ("store",), "default")
    assert link.target_config == ("shop-bucket",) and link.app == "shop"
    assert kinds.index("PutLink") > kinds.index("StartComponent")


def test_converged_app_is_deployed_and_quiet() -> None:
    m = manifest(shop())
    final, _ = converge(m, two_hosts())
    assert reconcile(m, final) == []
    st = status(m, final)
    assert st.state is AppState.DEPLOYED
    assert [s.state for s in st.links] == [AppState.DEPLOYED]
    assert {c.name: (c.desired, c.running) for c in st.components} == {"cart": (2, 2), "kv": (1, 1), "kv2": (1, 1)}


def test_changed_interfaces_and_config_values_are_put_again() -> None:
    final, _ = converge(manifest(shop()), two_hosts())
    cmds = reconcile(manifest(shop(interfaces="store, atomics", bucket="baskets")), final)
    assert PutConfig(name="shop-bucket", values={"bucket": "baskets"}, app="shop") in cmds
    (link,) = [c for c in cmds if isinstance(c, PutLink)]
    assert link.interfaces == ("atomics", "store")


def test_retargeted_link_deletes_the_old_one_first() -> None:
    final, _ = converge(manifest(shop()), two_hosts())
    m2 = manifest(shop(target="kv2", version="v2"))
    cmds = reconcile(m2, final)
    delete = next(i for i, c in enumerate(cmds) if isinstance(c, DeleteLink))
    put = next(i for i, c in enumerate(cmds) if isinstance(c, PutLink))
    assert delete < put
    final2, _ = converge(m2, final)  # the simulator refuses conflicting links
    assert [lk.target for lk in final2.links] == ["shop-kv2"]


def test_removed_link_is_deleted_then_its_config() -> None:
    final, _ = converge(manifest(shop()), two_hosts())
    m2 = manifest(shop(links="", version="v2"))
    first = reconcile(m2, final)
    assert [c for c in first if isinstance(c, DeleteLink)]
    assert not [c for c in first if isinstance(c, DeleteConfig)]  # still used by the link
    final2, _ = converge(m2, final)
    assert final2.links == ()
    assert "shop-bucket" not in final2.configs and "shop-settings" in final2.configs


def test_links_of_others_are_not_deleted_and_conflicts_are_reported() -> None:
    foreign = ObservedLink(source_id="shop-cart", target="elsewhere", namespace="wasi", package="keyvalue",
                           interfaces=("store",), app="other")
    unmanaged = ObservedLink(source_id="x", target="y", namespace="wasi", package="http",
                             interfaces=("outgoing-handler",))
    obs = lattice(host("a"), host("b"), links=[foreign, unmanaged])
    m = manifest(shop())
    cmds = reconcile(m, obs)
    assert not [c for c in cmds if isinstance(c, PutLink | DeleteLink)]
    st = status(m, obs)
    assert st.state is AppState.FAILED
    assert st.links[0].state is AppState.FAILED
    assert "conflicts with link shop-cart -> elsewhere" in st.links[0].message and "'other'" in st.message


def test_an_identical_link_put_by_someone_else_is_accepted_as_is() -> None:
    m = manifest(shop())
    final, _ = converge(m, two_hosts())
    unowned = tuple(ObservedLink(**{**lk.__dict__, "app": None}) for lk in final.links)
    assert reconcile(m, Observed(hosts=final.hosts, links=unowned, configs=final.configs)) == []


def test_named_config_must_exist_before_anything_that_names_it_starts() -> None:
    text = shop().replace("          - name: settings\n            properties: {currency: EUR}\n",
                          "          - name: shared-settings\n")
    m = manifest(text)
    cmds = reconcile(m, two_hosts())
    assert not [c for c in cmds if isinstance(c, StartComponent) and c.component_id == "shop-cart"]
    st = status(m, two_hosts())
    cart = next(c for c in st.components if c.name == "cart")
    assert cart.state is AppState.FAILED and "waiting for config 'shared-settings'" in cart.message
    with_config = lattice(host("a"), host("b"), configs={"shared-settings": {"currency": "CHF"}})
    final, _ = converge(m, with_config)
    assert sum(placements(final, "shop-cart").values()) == 2
    assert "shared-settings" in final.configs  # never deleted: not ours


def test_config_of_another_app_is_not_overwritten() -> None:
    obs = lattice(host("a"), configs={"shop-settings": ObservedConfig(values={"currency": "USD"}, app="billing")})
    m = manifest(shop())
    cmds = reconcile(m, obs)
    assert not [c for c in cmds if isinstance(c, PutConfig) and c.name == "shop-settings"]
    assert "belongs to application 'billing'" in status(m, obs).message


def test_provider_to_provider_link_is_ignored() -> None:
    path = CORPUS / "valid" / "oam-simple1.yaml"
    if not path.exists():
        pytest.skip("wadm conformance corpus not found")
    m = load_manifest(path)
    assert not [c for c in reconcile(m, two_hosts()) if isinstance(c, PutLink)]


def test_links_with_the_same_identity_are_merged() -> None:
    path = CORPUS / "valid" / "correct_unique_interface_links.yaml"
    if not path.exists():
        pytest.skip("wadm conformance corpus not found")
    (link,) = [c for c in reconcile(load_manifest(path), two_hosts()) if isinstance(c, PutLink)]
    assert link.interfaces == ("atomics", "store")


def test_shared_components_resolve_to_the_shared_app_ids() -> None:
    folder = CORPUS / "shared-apps"
    if not folder.is_dir():
        pytest.skip("wadm conformance corpus not found")
    shared = load_manifest(folder / "shared_http.yaml")
    dev = load_manifest(folder / "shared_http_dev.yaml")
    base, _ = converge(shared, two_hosts())
    final, _ = converge(dev, base, shared_apps={"shared-http": shared})
    links = {(lk.source_id, lk.target) for lk in final.links}
    assert links == {("shared_http-httpserver", "shared_http_dev-hello"),
                     ("shared_http_dev-hello", "shared_http-httpclient")}
    # the dev app does not start its own copies of the shared providers
    assert all(h.providers.get("shared_http-httpserver") is None
               or h.providers["shared_http-httpserver"].annotations[APP_ANNOTATION] == "shared-http"
               for h in final.hosts.values())
    st = status(dev, final, shared_apps={"shared-http": shared})
    assert st.state is AppState.DEPLOYED, st


def test_undeploy_removes_only_what_the_app_put() -> None:
    m = manifest(shop())
    final, _ = converge(m, lattice(host("a"), ObservedHost(id="b", components={"keep": RunningComponent("k:1", 1)})))
    final = Observed(hosts=final.hosts, links=(*final.links, ObservedLink(
        source_id="keep", target="x", namespace="a", package="b", interfaces=("c",))), configs={
        **final.configs, "unrelated": ObservedConfig(values={"a": "b"})})
    assert undeploy_status("shop", final).state is AppState.RECONCILING
    obs = final
    for _ in range(5):
        cmds = undeploy("shop", obs, pass_id="u")
        if not cmds:
            break
        assert not any(isinstance(c, StopComponent) and c.component_id == "keep" for c in cmds)
        obs = apply(obs, cmds)
    assert undeploy_status("shop", obs).state is AppState.UNDEPLOYED
    assert "keep" in obs.hosts["b"].components
    assert [lk.source_id for lk in obs.links] == ["keep"]
    assert set(obs.configs) == {"unrelated"}


def test_commands_carry_reason_and_pass_id_but_compare_without_them() -> None:
    a = reconcile(manifest(shop()), two_hosts(), pass_id="pass-1")
    b = reconcile(manifest(shop()), two_hosts(), pass_id="pass-2")
    assert a == b
    assert all(c.pass_id == "pass-1" and c.reason for c in a)
    assert len(set(a)) == len(a)  # hashable and distinct
    assert all(c.app == "shop" for c in a)
