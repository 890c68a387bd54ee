//! Prints the function reference of `docs/expressions.md` from the library's own
//! documentation (`cargo run -p allama-expr --example function_table`).

fn main() {
    let mut category = "";
    for f in allama_expr::functions() {
        if f.category != category {
            category = f.category;
            println!("\n### {category}\n");
            println!("| function | what it does | example | result |");
            println!("| --- | --- | --- | --- |");
        }
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        println!(
            "| `{}` | {} | `{}` | `{}` |",
            cell(f.signature),
            cell(f.summary),
            cell(f.example),
            cell(f.result)
        );
    }
}
