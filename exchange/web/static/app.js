// Buttons with data-target show or hide the element with that id (the raw JSON).
document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button.toggle[data-target]")) {
    button.addEventListener("click", () => {
      const target = document.getElementById(button.dataset.target);
      const hidden = target.classList.toggle("hidden");
      button.textContent = hidden ? "show" : "hide";
    });
  }
});
