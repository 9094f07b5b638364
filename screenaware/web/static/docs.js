// Starts Swagger UI on /api/docs (a file, not an inline script: the page's CSP
// allows scripts from the service only).
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/api/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    // "Try it out" is on from the start; requests go to this service (no servers list).
    tryItOutEnabled: true,
    // No badge from the online validator: nothing leaves the service.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
