//! `#[helixobs::create(..)]` and `#[helixobs::operate(..)]`: track every call of a function as
//! a creation or an operation. Use them through the `helixobs` crate.
//!
//! Arguments (`name = expression`, the expressions may use the function's arguments):
//!
//! * `create`: `stage = "search"`, `id = block_id`, optional `parents = [a, b]` (anything
//!   iterable over string-likes);
//! * `operate`: `operation = "archive"`, `entity_id = event_id`;
//! * both: optional `tel = expression` (an `&Instrument` or `Instrument`); without it the most
//!   recently built instrument is used.
//!
//! Sync functions: the step is current for the body and completes when it returns (a panic
//! records `helix.error`). `async fn`: the step covers the awaited execution, current at every
//! poll. A function returning `Result<_, E: Display>` records an `Err` as `helix.error`.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ItemFn, Lit, MetaNameValue, ReturnType, Token, Type};

/// Track each call of the function as the creation of an entity.
///
/// `#[helixobs::create(stage = "search", id = block_id, parents = [parent_id])]`
#[proc_macro_attribute]
pub fn create(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Create, args.into(), item.into()).unwrap_or_else(|e| e.to_compile_error()).into()
}

/// Track each call of the function as an operation on an existing entity.
///
/// `#[helixobs::operate(operation = "archive", entity_id = event_id)]`
#[proc_macro_attribute]
pub fn operate(args: TokenStream, item: TokenStream) -> TokenStream {
    expand(Kind::Operate, args.into(), item.into()).unwrap_or_else(|e| e.to_compile_error()).into()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Create,
    Operate,
}

struct Args {
    name: syn::LitStr,
    id: Expr,
    parents: Option<Expr>,
    tel: Option<Expr>,
}

fn parse_args(kind: Kind, args: Tokens) -> syn::Result<Args> {
    let (name_key, id_key) = match kind {
        Kind::Create => ("stage", "id"),
        Kind::Operate => ("operation", "entity_id"),
    };
    let pairs = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(args.clone())?;
    let (mut name, mut id, mut parents, mut tel) = (None, None, None, None);
    for pair in pairs {
        let key = pair.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
        match key.as_str() {
            k if k == name_key => match &pair.value {
                Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => name = Some(s.clone()),
                other => return Err(syn::Error::new_spanned(other, format!("`{name_key}` must be a string literal"))),
            },
            k if k == id_key => id = Some(pair.value),
            "parents" if kind == Kind::Create => parents = Some(pair.value),
            "tel" => tel = Some(pair.value),
            _ => {
                let allowed = match kind {
                    Kind::Create => "stage, id, parents, tel",
                    Kind::Operate => "operation, entity_id, tel",
                };
                return Err(syn::Error::new_spanned(
                    &pair.path,
                    format!("unknown argument; expected one of: {allowed}"),
                ));
            }
        }
    }
    let name = name.ok_or_else(|| syn::Error::new_spanned(&args, format!("missing `{name_key} = \"...\"`")))?;
    let id = id.ok_or_else(|| syn::Error::new_spanned(&args, format!("missing `{id_key} = <expression>`")))?;
    Ok(Args { name, id, parents, tel })
}

/// `Result<..>` as the last path segment of the return type (the usual `Result` aliases too).
fn returns_result(output: &ReturnType) -> bool {
    match output {
        ReturnType::Type(_, ty) => match ty.as_ref() {
            Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Result"),
            _ => false,
        },
        ReturnType::Default => false,
    }
}

fn expand(kind: Kind, args: Tokens, item: Tokens) -> syn::Result<Tokens> {
    let args = parse_args(kind, args)?;
    let mut func: ItemFn = syn::parse2(item)?;
    let Args { name, id, parents, tel } = args;
    let tel = match tel {
        Some(t) => {
            quote! { ::core::option::Option::Some(::core::borrow::Borrow::<::helixobs::Instrument>::borrow(&(#t))) }
        }
        None => quote! { ::core::option::Option::None },
    };
    let start = match kind {
        Kind::Create => quote! { ::helixobs::__private::create(__helixobs_tel, #name, &(#id)) },
        Kind::Operate => quote! { ::helixobs::__private::operate(__helixobs_tel, #name, &(#id)) },
    };
    let builder = match parents {
        Some(p) => quote! { #start.parents(#p) },
        None => start,
    };
    let body = &func.block;
    let is_result = returns_result(&func.sig.output);
    let output = match &func.sig.output {
        ReturnType::Type(_, ty) => quote! { #ty },
        ReturnType::Default => quote! { () },
    };
    let new_body = if func.sig.asyncness.is_some() {
        if is_result {
            quote! {{
                let __helixobs_future = async move #body;
                match ::helixobs::__private::instrument(#tel) {
                    ::core::option::Option::Some(ref __helixobs_tel) => {
                        let __helixobs_token = ::helixobs::__private::start_unattached(#builder);
                        let __helixobs_result: #output = __helixobs_token.scope(__helixobs_future).await;
                        ::helixobs::__private::finish(__helixobs_token, &__helixobs_result);
                        __helixobs_result
                    }
                    ::core::option::Option::None => __helixobs_future.await,
                }
            }}
        } else {
            quote! {{
                let __helixobs_future = async move #body;
                match ::helixobs::__private::instrument(#tel) {
                    ::core::option::Option::Some(ref __helixobs_tel) => #builder.in_scope(__helixobs_future).await,
                    ::core::option::Option::None => __helixobs_future.await,
                }
            }}
        }
    } else if is_result {
        quote! {{
            let __helixobs_instrument = ::helixobs::__private::instrument(#tel);
            let __helixobs_token = __helixobs_instrument.as_ref().map(|__helixobs_tel| #builder.start());
            #[allow(clippy::redundant_closure_call)]
            let __helixobs_result: #output = (|| -> #output #body)();
            if let ::core::option::Option::Some(__helixobs_token) = __helixobs_token {
                ::helixobs::__private::finish(__helixobs_token, &__helixobs_result);
            }
            __helixobs_result
        }}
    } else {
        quote! {{
            let __helixobs_instrument = ::helixobs::__private::instrument(#tel);
            let __helixobs_token = __helixobs_instrument.as_ref().map(|__helixobs_tel| #builder.start());
            #body
        }}
    };
    *func.block = syn::parse2(new_body)?;
    Ok(quote! { #func })
}
