// The neuron explorer's index (universal_neurons.explorer.pages): every `table.sortable` sorts by a column when its
// header is clicked (numbers numerically, text alphabetically; a second click reverses; a cell's data-sort, when
// present, is its key) and gets a box above it that hides the rows not containing the text typed. Adapted from
// book/_static/sortable.js; no library, nothing loaded from elsewhere. Without JavaScript the table is unchanged.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach((table) => {
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
          const cell = row.cells[col] || {};
          const text = (cell.dataset && cell.dataset.sort) || cell.textContent || "";
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
    const box = document.createElement("input");
    box.type = "search";
    box.className = "filter";
    box.placeholder = "filter rows (any text in the row)";
    box.addEventListener("input", () => {
      const q = box.value.trim().toLowerCase();
      Array.from(body.rows).forEach((r) => {
        r.hidden = q !== "" && !r.textContent.toLowerCase().includes(q);
      });
    });
    table.parentNode.insertBefore(box, table);
  });
});
