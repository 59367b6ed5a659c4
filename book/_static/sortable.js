// Every table of a chapter (pandas DataFrames rendered by myst-nb) sorts by a column when its header is clicked:
// numbers numerically, text alphabetically; a second click reverses. No library, nothing loaded from elsewhere.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.dataframe").forEach((table) => {
    const body = table.tBodies[0];
    const heads = table.tHead ? table.tHead.rows[table.tHead.rows.length - 1].cells : [];
    Array.from(heads).forEach((th, col) => {
      th.style.cursor = "pointer";
      th.title = "sort by this column";
      th.addEventListener("click", () => {
        const up = th.dataset.sorted !== "up";
        Array.from(heads).forEach((h) => delete h.dataset.sorted);
        th.dataset.sorted = up ? "up" : "down";
        const key = (row) => {
          const text = (row.cells[col] || {}).textContent || "";
          const num = parseFloat(text.replace(/,/g, ""));
          return isNaN(num) ? text.trim().toLowerCase() : num;
        };
        const rows = Array.from(body.rows).sort((a, b) => {
          const x = key(a), y = key(b);
          const c = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1;
          return up ? c : -c;
        });
        rows.forEach((r) => body.appendChild(r));
      });
    });
  });
});
