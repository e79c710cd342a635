// The reference enrollment page: walks an applicant through the channel's personal flow on
// the appliance's applications API (through /enroll/api/, which acts as the channel). Every
// value shown comes back masked from the appliance; nothing is written with innerHTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const API = "/enroll/api/applications";
  let app = null;
  let poll = null;
  let csrSent = false;

  const MESSAGES = {
    captcha_wrong: "图形验证码错误，已更换新的验证码，请重新输入",
    captcha_expired: "图形验证码已过期，请重新输入",
    otp_wrong: "短信验证码错误，请重新输入",
    otp_expired: "短信验证码已过期",
    phone_not_verified: "该手机号不是已验证的手机号，请重新确认",
    verification_failed: "认证未通过",
    invalid_id_number: "证件号码有误，请检查",
    invalid_phone: "手机号码有误，请检查",
    invalid_card: "银行卡号有误，请检查",
    missing_field: "请填写完整信息",
    application_open: "您已有一个进行中的申请",
    rate_limited: "操作过于频繁，请稍后再试",
  };
  const STATUS = {
    rejected: "申请未通过", expired: "申请已过期", cancelled: "申请已取消", failed: "签发失败",
  };

  function showError(text) {
    const e = $("error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  async function call(method, path, body) {
    const resp = await fetch(API + path, {
      method,
      headers: body ? { "content-type": "application/json" } : {},
      body: body ? JSON.stringify(body) : undefined,
      credentials: "same-origin",
    });
    let json = {};
    try { json = await resp.json(); } catch (_) { /* an empty or non-JSON answer */ }
    if (!resp.ok) {
      showError(MESSAGES[json.error] || json.message || `请求失败（${resp.status}）`);
      if (json.application) render(json.application);
      return null;
    }
    showError("");
    return json;
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function field(label, id, attrs) {
    const l = el("label", {}, label);
    l.appendChild(el("input", Object.assign({ id, autocomplete: "off" }, attrs || {})));
    return l;
  }

  function button(id, text, onClick, cls) {
    const b = el("button", { id, type: "button", class: cls || "" }, text);
    b.addEventListener("click", onClick);
    return b;
  }

  const SECTIONS = ["start", "change", "step", "done", "changed"];

  function only(id) {
    for (const s of SECTIONS) $(s).hidden = s !== id;
    if (id !== "step") $("step-body").replaceChildren();
  }

  function step(title, text, nodes) {
    only("step");
    $("step-title").textContent = title;
    $("step-text").textContent = text;
    const body = $("step-body");
    body.replaceChildren(...nodes);
    const first = body.querySelector("input");
    if (first) first.focus();
  }

  function later(ms) {
    clearTimeout(poll);
    poll = setTimeout(refresh, ms);
  }

  async function refresh() {
    if (!app) return;
    const v = await call("GET", `/${app.id}`);
    if (v) render(v);
  }

  async function act(action, body) {
    const v = await call("POST", `/${app.id}/${action}`, body);
    if (v) render(v);
  }

  function verifiedPhone(v) {
    const phone = (v.verified || []).find((a) => a.field === "phone");
    return phone ? phone.value : ((v.subject || {}).phone || "");
  }

  // A phone change completed: the certificate stays, the verified phone is the new one.
  function changed(v) {
    only("changed");
    $("changed-name").textContent = (v.subject || {}).name || "";
    $("changed-phone").textContent = verifiedPhone(v);
    $("changed-level").textContent = v.assurance_level || "";
    $("changed-serial").textContent = v.target_certificate || "";
    document.body.dataset.state = "phone-changed";
  }

  // The phone change form, for the certificate `serial` (prefilled after an issuance).
  function openChange(serial) {
    showError("");
    $("change-name").value = $("change-name").value || $("name").value;
    $("change-id-number").value = $("change-id-number").value || $("id-number").value;
    $("change-serial").value = serial || $("change-serial").value;
    only("change");
    document.body.dataset.state = "change";
    $("change-phone").focus();
  }

  function done(v) {
    only("done");
    const s = v.subject || {};
    $("cert-name").textContent = s.name || "";
    $("cert-id").textContent = s.id_number || "";
    $("cert-phone").textContent = verifiedPhone(v);
    $("cert-level").textContent = v.assurance_level || "";
    $("cert-serial").textContent = v.certificate.serial;
    $("cert-not-after").textContent = v.certificate.not_after
      ? new Date(v.certificate.not_after * 1000).toLocaleDateString("zh-CN") : "";
    $("cert-pem").textContent = v.certificate.pem || "";
    document.body.dataset.state = "issued";
  }

  async function sendCsr() {
    if (csrSent) return;
    csrSent = true;
    step("生成密钥", "正在本设备上生成密钥并提交证书请求……", [el("p", { class: "spinner" }, "请稍候")]);
    try {
      const { csr, extractable } = await Pkcs10.generate("enroll");
      document.body.dataset.keyExtractable = String(extractable);
      await act("csr", { csr });
    } catch (e) {
      csrSent = false;
      showError(`无法在本浏览器中生成密钥：${e.message || e}`);
    }
  }

  function render(v) {
    app = v;
    clearTimeout(poll);
    document.body.dataset.status = v.status;
    if (v.kind === "phone_change" && v.status === "completed") return changed(v);
    if (v.certificate && v.certificate.pem) return done(v);
    if (!v.step) {
      const why = v.failure ? (MESSAGES[v.failure.code] || v.failure.message) : "";
      step(STATUS[v.status] || "申请已结束", why, []);
      return;
    }
    const s = v.step;
    const c = s.challenge || {};
    const needs = Array.isArray(s.needs) ? s.needs : [];
    const options = Array.isArray(s.options) ? s.options : [];
    if (c.kind === "captcha") {
      const img = el("img", { id: "captcha-img", alt: "图形验证码", src: `data:image/png;base64,${c.image_png_base64}` });
      const row = el("div", { class: "captcha" });
      row.append(field("图形验证码", "captcha", { inputmode: "numeric", maxlength: "8" }), img);
      step("安全验证", "请输入图中的数字，验证通过后将发送短信验证码", [row,
        button("submit-captcha", "确定", () => act("input", { kind: "captcha", value: $("captcha").value.trim() }))]);
    } else if (c.kind === "sms_code") {
      const to = c.phone || (v.subject && v.subject.phone) || "";
      step(s.name === "confirm_phone" ? "确认手机号" : "短信验证", `验证码已发送至 ${to}`, [
        field("短信验证码", "sms-code", { inputmode: "numeric", maxlength: "6" }),
        button("submit-sms", "提交", () => act("input", { kind: "sms_code", value: $("sms-code").value.trim() }))]);
    } else if (c.kind === "face_url" && c.url) {
      const link = el("a", { id: "face-link", class: "button", href: c.url, target: "_blank", rel: "noopener noreferrer" }, "开始人脸识别");
      step("人脸识别", "请在新打开的页面中完成活体检测，完成后本页面将自动继续", [link,
        el("p", { class: "spinner" }, "等待人脸识别结果……")]);
      later(1500);
    } else if (s.name === "confirm_phone") {
      step("确认手机号", `请确认已验证的手机号 ${s.phone || ""}，我们将向该号码发送验证码`, [
        field("手机号码", "confirm-phone", { inputmode: "numeric", maxlength: "11" }),
        button("submit-confirm", "发送验证码", () => act("confirm", { phone: $("confirm-phone").value.trim() }))]);
    } else if ((s.method === "bank-card" && needs.length) || options.includes("bank-card")) {
      const why = v.failure && v.failure.code === "phone_not_real_name"
        ? "您的手机号未通过运营商实名校验，请改用银行卡认证" : "请填写本人银行卡信息";
      step("银行卡认证", why, [
        field("银行卡号", "bank-card", { inputmode: "numeric", maxlength: "19" }),
        field("银行预留手机号", "bank-phone", { inputmode: "numeric", maxlength: "11" }),
        button("submit-bank", "下一步", () => act("choose", { method: "bank-card",
          subject: { bank_card: $("bank-card").value.trim(), phone: $("bank-phone").value.trim() } }))]);
    } else if (options.length) {
      step("选择认证方式", "", options.map((m) => button(`choose-${m}`, m, () => act("choose", { method: m }))));
    } else if (s.name === "csr") {
      sendCsr();
    } else {
      step("处理中", "正在核验，请稍候……", [el("p", { class: "spinner" }, "请稍候")]);
      later(1000);
    }
  }

  async function start() {
    if (!$("agree").checked) { showError("请先阅读并同意《数字证书服务协议》"); return; }
    const v = await call("POST", "", {
      kind: "new",
      profile: "personal",
      subject: {
        type: "person",
        name: $("name").value.trim(),
        id_type: $("id-type").value,
        id_number: $("id-number").value.trim().toUpperCase(),
        phone: $("phone").value.trim(),
      },
    });
    if (v) render(v);
  }

  async function startChange() {
    const v = await call("POST", "", {
      kind: "phone_change",
      profile: "personal",
      certificate: $("change-serial").value.trim().toLowerCase(),
      subject: {
        type: "person",
        name: $("change-name").value.trim(),
        id_type: "resident_id",
        id_number: $("change-id-number").value.trim().toUpperCase(),
        phone: $("change-phone").value.trim(),
      },
    });
    if (v) render(v);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("submit-start").addEventListener("click", start);
    $("open-change").addEventListener("click", () => openChange(""));
    $("submit-change").addEventListener("click", startChange);
    $("to-phone-change").addEventListener("click", () => openChange(app && app.certificate ? app.certificate.serial : ""));
    // The face page opens in another tab; coming back re-reads the application at once.
    document.addEventListener("visibilitychange", () => { if (!document.hidden && app) refresh(); });
  });
})();
